"""Adds files to a Lambda zip beside its bootstrap (the connectors file, inventory-sync's
inventory and catalogs).

usage: add-to-zip.py ZIP FILE...   (a .toml file is stored as connectors.toml, a catalog under
its own name, anything else as inventory.json, so PATCHFLOW_CONNECTORS_CONFIG=
/var/task/connectors.toml, PATCHFLOW_INVENTORY_PATH=/var/task/inventory.json and
PATCHFLOW_CATALOG_PATH=/var/task/catalog-{cycle}.json find them)
"""
import os
import sys
import zipfile


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    archive, files = argv[1], argv[2:]
    for path in files:
        if not os.path.isfile(path):
            print(f"add-to-zip: {path}: no such file", file=sys.stderr)
            return 2
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as z:
        for path in files:
            name = os.path.basename(path)
            if name.endswith(".toml"):
                name = "connectors.toml"
            elif not name.startswith("catalog-"):
                name = "inventory.json"
            z.write(path, arcname=name)
            print(f"added {path} to {archive} as {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
