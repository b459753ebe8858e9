"""Adds files to a Lambda zip beside its bootstrap (the connectors file, inventory-sync's
inventory and catalogs).

usage: add-to-zip.py ZIP [NAME=]FILE...   (a file is stored under NAME, else under its own name:
make package stores the connectors file as connectors.toml and the inventory as inventory.json,
so PATCHFLOW_CONNECTORS_CONFIG=/var/task/connectors.toml, PATCHFLOW_INVENTORY_PATH=
/var/task/inventory.json and PATCHFLOW_CATALOG_PATH=/var/task/catalog-{cycle}.json find them)
"""
import os
import sys
import zipfile


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    archive, specs = argv[1], argv[2:]
    files = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = os.path.basename(spec), spec
        if not os.path.isfile(path):
            print(f"add-to-zip: {path}: no such file", file=sys.stderr)
            return 2
        files.append((name, path))
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as z:
        for name, path in files:
            z.write(path, arcname=name)
            print(f"added {path} to {archive} as {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
