"""The real-time label processor: a Faust app over the shared fold and rule evaluation."""
