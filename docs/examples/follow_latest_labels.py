"""Example: keep the latest labels of every entity in memory and react to each change.

    LABELSTORE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092 python docs/examples/follow_latest_labels.py

Reads the compacted topic labels.latest (one record per entity and label) from the beginning,
then follows it. Records are JSON label versions; the key is "<entity_type>/<label>/<entity_id>".
"""

from labelstore.settings import Settings
from labelstore.processors.latest_view import LatestLabelsView


def main() -> None:
    view = LatestLabelsView(Settings())
    print(f"caught up: {view.catch_up()} labels")
    for version in view.follow():
        print(f"{version.entity_type} {version.entity_id}: {version.label} "
              f"{version.previous_value} -> {version.value} (rule v{version.rule_version}, "
              f"caused by event {version.caused_by.event_id})")


if __name__ == "__main__":
    main()
