"""Writes one benchmark's results into a section of BENCHMARKS.md (between marker comments).

Usage: write_benchmarks.py FILE SECTION COMMAND FACEDEX_JSON PEER_JSON
"""

import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def replace_section(path: Path, section: str, table: str) -> None:
    """Puts `table` (which carries its own markers) between the section's markers in `path`."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- {section}:begin -->.*?<!-- {section}:end -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: table, text)
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    path.write_text(text)


def main() -> None:
    path, section, command = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    # Every run of the benchmark: facedex's ("facedex ...") and the peers', in the order run.
    rows = [json.loads(argument) for argument in sys.argv[4:]]
    ours = [row for row in rows if row["implementation"].startswith("facedex")]
    peers = [row for row in rows if not row["implementation"].startswith("facedex")]
    fastest_peer = max(peers, key=lambda row: row["photos_per_s"])
    ratio = lambda a, b: a["photos_per_s"] / b["photos_per_s"]
    table = "\n".join([
        f"<!-- {section}:begin -->",
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu_model()}), one run of `{command}`:",
        "",
        "| implementation | photos | faces | seconds | photos/s | faces/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['implementation']} | {r['photos']} | {r['faces']} | {r['seconds']:.2f} | {r['photos_per_s']:.2f} | {r['faces_per_s']:.2f} |"
          for r in ours + peers),
        "",
        f"**{ours[0]['implementation']} / {fastest_peer['implementation']}, the fastest peer run: "
        f"{ratio(ours[0], fastest_peer):.2f}× photos/s.**",
        "",
        "| | " + " | ".join(peer["implementation"] for peer in peers) + " |",
        "| --- | " + " | ".join("---:" for _ in peers) + " |",
        *(f"| {mine['implementation']} | " + " | ".join(f"{ratio(mine, peer):.2f}×" for peer in peers) + " |"
          for mine in ours),
        f"<!-- {section}:end -->",
    ])
    replace_section(path, section, table)
    print(f"{section}: {ours[0]['implementation']} {ours[0]['photos_per_s']} photos/s, "
          f"{fastest_peer['implementation']} {fastest_peer['photos_per_s']} photos/s, ratio {ratio(ours[0], fastest_peer):.2f}")


if __name__ == "__main__":
    main()
