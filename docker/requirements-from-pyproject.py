"""Print the third-party dependencies declared in the given pyproject.toml files.

Used by the Dockerfiles to install dependencies in their own cached layer before
the source is copied; the project's own packages (fastloans-*) are left out
because they are installed from the source afterwards.
"""

import sys
import tomllib


def main(paths: list[str]) -> None:
    """Write one requirement per line, deduplicated, in first-seen order."""
    seen: dict[str, None] = {}
    for path in paths:
        with open(path, "rb") as handle:
            project = tomllib.load(handle)["project"]
        for requirement in project.get("dependencies", []):
            if not requirement.lower().startswith("fastloans"):
                seen.setdefault(requirement, None)
    sys.stdout.write("".join(f"{requirement}\n" for requirement in seen))


if __name__ == "__main__":
    main(sys.argv[1:])
