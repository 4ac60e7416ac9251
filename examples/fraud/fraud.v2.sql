-- name: fraud
-- version: 2
-- entity_type: order
-- maturity_days: 90
-- description: like v1, but a 'false-positive' tag from the review team makes the order negative
CASE
  WHEN list_contains(tags, 'false-positive') AND classification IS NOT NULL THEN 'negative'
  WHEN classification = 'FRAUD'
    OR (classification = 'NOT_FRAUD' AND list_contains(tags, 'false-negative')) THEN 'positive'
  WHEN classification = 'NOT_FRAUD' THEN 'negative'
END
