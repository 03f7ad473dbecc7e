"""mkdocs-gen-files script: writes the generated reference pages into the site at build time.

``reference/cli.md`` and ``reference/config.md`` come from the code (see ``metarep_reference.py``);
nothing generated is stored in the repository.
"""

import sys
from pathlib import Path

import mkdocs_gen_files

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metarep_reference import cli_markdown, config_markdown  # noqa: E402

for name, render in (("reference/cli.md", cli_markdown), ("reference/config.md", config_markdown)):
    with mkdocs_gen_files.open(name, "w") as f:
        f.write(render())
    mkdocs_gen_files.set_edit_path(name, Path(__file__).name)
