"""Write generated cluster history as OpenMetrics text (for `promtool tsdb create-blocks-from`).

python -m devtools.generate --out history.om --hours 12 --clusters a,b --cluster-label cluster
"""

from __future__ import annotations

import argparse
import time

from devtools.history import HistorySpec, write_openmetrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--clusters", default="demo-a")
    parser.add_argument("--cluster-label", default=None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pods-per-node", type=int, default=6)
    args = parser.parse_args(argv)
    now = int(time.time())
    end = now - now % 3600
    spec = HistorySpec(
        clusters=tuple(args.clusters.split(",")),
        start=end - args.hours * 3600,
        end=end,
        nodes=args.nodes,
        pods_per_node=args.pods_per_node,
        cluster_label=args.cluster_label,
    )
    with open(args.out, "w", encoding="utf-8") as out:
        series = write_openmetrics(spec, out)
    print(f"wrote {series} series over {args.hours}h to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
