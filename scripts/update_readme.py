"""Copy generated tables from results/ into README.md between their markers, so README numbers are
never typed by hand:

    <!-- BEGIN results/cifar10/headline.md -->
    ...replaced...
    <!-- END results/cifar10/headline.md -->

    python scripts/update_readme.py
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- BEGIN (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- END (?P=path) -->)", re.DOTALL)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()

    def fill(match):
        source = ROOT / match["path"]
        body = source.read_text() if source.is_file() else f"(not generated yet: run the script that writes {match['path']})\n"
        return match.group(1) + body + match.group(4)

    updated = BLOCK.sub(fill, text)
    if updated != text:
        readme.write_text(updated)
        print("README.md updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
