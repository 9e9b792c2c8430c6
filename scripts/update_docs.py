"""Copy generated tables from results/ into README.md and docs/*.md between their markers, so no number
in them is typed by hand:

    <!-- BEGIN results/cifar10/short.md -->
    ...replaced...
    <!-- END results/cifar10/short.md -->

    python scripts/update_docs.py
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- BEGIN (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- END (?P=path) -->)", re.DOTALL)


def main() -> int:
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = document.read_text()

        def fill(match):
            source = ROOT / match["path"]
            body = (
                source.read_text()
                if source.is_file()
                else f"(not generated yet: run the script that writes {match['path']})\n"
            )
            return match.group(1) + body + match.group(4)

        updated = BLOCK.sub(fill, text)
        if updated != text:
            document.write_text(updated)
            print(f"{document.relative_to(ROOT)} updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
