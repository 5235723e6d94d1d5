"""What a containerd namespace holds, read from two ``ctr`` listings: ``ctr images ls``
(each image name and the digest it points at) and ``ctr content ls`` (each blob and its
labels). Pure functions over their text; nothing here runs ``ctr``.

containerd's importer labels every manifest blob with its children
(``containerd.io/gc.ref.content.config``, ``…l.0``, ``…l.1``, … in layer order), every index
with its manifests (``…m.0``, …), every unpacked config with its top snapshot
(``containerd.io/gc.ref.snapshot.<snapshotter>``), and every layer blob it unpacked with its
diff ID (``containerd.io/uncompressed``). So the config digest under a name (imgsync's
version), the layers a thin bundle may leave out, and the blob each was loaded from are
known without reading a single manifest. Names and labels come from the engine, but a
listing is still parsed as untrusted text: anything malformed is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imgsync.model import VERSION_RE, chain_ids

CONFIG = "containerd.io/gc.ref.content.config"
LAYER = re.compile(r"containerd\.io/gc\.ref\.content\.l\.([0-9]{1,6})")
MANIFEST = re.compile(r"containerd\.io/gc\.ref\.content\.m\.([0-9]{1,6})")
UNPACKED = "containerd.io/gc.ref.snapshot."
DIFF_ID = "containerd.io/uncompressed"


@dataclass(frozen=True)
class Catalog:
    names: dict[str, str]  # image name → the digest it points at (a manifest or an index)
    content: dict[str, dict[str, str]]  # blob digest → its labels

    def manifest(self, target: str) -> str | None:
        """The manifest an image's target stands for: itself, or the first manifest of an
        index whose config was unpacked here (the one platform imported)."""
        labels = self.content.get(target)
        if labels is None:
            return None
        if CONFIG in labels:
            return target
        for child in _numbered(labels, MANIFEST):
            config = self.content.get(child, {}).get(CONFIG)
            if config is not None and _unpacked(self.content.get(config, {})):
                return child
        return None

    def config(self, name: str) -> str | None:
        """The config digest (imgsync's version) of the image ``name`` names, if whole."""
        manifest = self.manifest(self.names.get(name, ""))
        if manifest is None:
            return None
        config = self.content[manifest].get(CONFIG)
        return config if config is not None and VERSION_RE.fullmatch(config) else None

    def names_of(self, config: str) -> list[str]:
        """Every name whose image has the config ``config``."""
        return sorted(name for name in self.names if self.config(name) == config)

    def configs(self) -> set[str]:
        return {c for c in (self.config(name) for name in self.names) if c is not None}

    def layer_blobs(self) -> dict[str, str]:
        """Chain ID → blob digest of every layer held as a blob, under an unpacked image:
        what an OCI bundle may leave out (its own blob digest must be the same)."""
        held: dict[str, str] = {}
        targets = set(self.names.values())  # many names may share one image
        for manifest in {m for m in map(self.manifest, targets) if m is not None}:
            config = self.content[manifest].get(CONFIG, "")
            if not _unpacked(self.content.get(config, {})):
                continue
            pairs = []  # (blob, diff ID) of the layers held, bottom up, to the first missing
            for blob in _numbered(self.content[manifest], LAYER):
                diff_id = self.content.get(blob, {}).get(DIFF_ID, "")
                if not VERSION_RE.fullmatch(diff_id):
                    break
                pairs.append((blob, diff_id))
            chains = chain_ids(tuple(diff_id for _blob, diff_id in pairs))
            held.update(zip(chains, (blob for blob, _diff_id in pairs), strict=True))
        return held


def parse_images(text: str) -> dict[str, str]:
    """``ctr images ls``: REF TYPE DIGEST SIZE PLATFORMS LABELS, one image a line."""
    names = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and VERSION_RE.fullmatch(fields[2]):
            names[fields[0]] = fields[2]
    return names


def parse_content(text: str) -> dict[str, dict[str, str]]:
    """``ctr content ls``: DIGEST SIZE AGE LABELS, tab-separated (AGE has spaces)."""
    content: dict[str, dict[str, str]] = {}
    for line in text.splitlines()[1:]:
        fields = line.split("\t")
        if not fields or not VERSION_RE.fullmatch(fields[0]):
            continue
        labels = {}
        for pair in (fields[-1] if len(fields) >= 4 else "").split(","):
            key, eq, value = pair.partition("=")
            if eq:
                labels[key.strip()] = value.strip()
        content[fields[0]] = labels
    return content


def _numbered(labels: dict[str, str], pattern: re.Pattern[str]) -> list[str]:
    """The digests of the labels ``pattern`` numbers, in their order (valid digests only)."""
    found = []
    for key, value in labels.items():
        match = pattern.fullmatch(key)
        if match is not None and VERSION_RE.fullmatch(value):
            found.append((int(match[1]), value))
    return [value for _n, value in sorted(found)]


def _unpacked(config_labels: dict[str, str]) -> bool:
    return any(key.startswith(UNPACKED) for key in config_labels)
