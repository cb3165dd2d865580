"""Writes the pipeline benchmark (vision core, local mode, Kafka with 1/2/4 ingest workers)
into a section of BENCHMARKS.md.

Usage: write_pipeline_benchmarks.py FILE SECTION COMMAND RESULTS_JSONL
"""

import datetime
import json
import os
import sys
from pathlib import Path

from write_benchmarks import cpu_model, replace_section


def main() -> None:
    path, section, command = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    rows = [json.loads(line) for line in Path(sys.argv[4]).read_text().splitlines() if line.startswith("{")]
    baseline = rows[0]["photos_per_s"]
    lines = [
        f"<!-- {section}:begin -->",
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu_model()}), one run of `{command}`:",
        "",
        "| mode | ingest workers | photos | seconds | photos/s | vs vision core |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['ingest_workers']} | {row['photos']} | {row['seconds']:.2f} | "
            f"{row['photos_per_s']:.2f} | {row['photos_per_s'] / baseline:.2f}× |"
        )
    lines.append(f"<!-- {section}:end -->")
    replace_section(path, section, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
