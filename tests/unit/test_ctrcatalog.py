"""Reading a containerd namespace from ``ctr images ls`` and ``ctr content ls``: the listings
below are containerd 1.6.20's own, after importing one legacy and one OCI bundle of the same
image (trimmed to what matters, tabs and columns as ctr prints them)."""

from __future__ import annotations

from imgsync.engines.ctrcatalog import Catalog, parse_content, parse_images
from imgsync.model import chain_ids

MANIFEST_LEGACY = "sha256:" + "b3" * 32
MANIFEST_OCI = "sha256:" + "4c" * 32
INDEX = "sha256:" + "1d" * 32
OTHER_PLATFORM = "sha256:" + "0f" * 32
CONFIG = "sha256:" + "dd" * 32
L0, L1 = "sha256:" + "5d" * 32, "sha256:" + "fe" * 32
GZ = "sha256:" + "9a" * 32  # a gzip blob of L1
TOP = chain_ids((L0, L1))[1]
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANAGED = "io.cri-containerd.image=managed"
MANIFEST_LABEL = "containerd.io/gc.ref.content.m."

IMAGES = "\n".join(
    [
        "REF  TYPE  DIGEST  SIZE  PLATFORMS  LABELS",
        f"docker.io/acme/web:1 {DOCKER_MANIFEST} {MANIFEST_LEGACY} 80.8 KiB linux/amd64 {MANAGED}",
        f"{CONFIG} {OCI_MANIFEST} {MANIFEST_OCI} 80.7 KiB linux/amd64 {MANAGED}",
        f"docker.io/acme/multi:1 {OCI_INDEX} {INDEX} 80.7 KiB linux/amd64,linux/arm64 -",
        "broken name-without-digest",
    ]
)


def _line(digest: str, **labels: str) -> str:
    joined = ",".join(f"{k}={v}" for k, v in labels.items())
    return f"{digest}\t513B\tLess than a second\t{joined}"


def _manifest(config: str, *layers: str) -> dict[str, str]:
    labels = {"containerd.io/gc.ref.content.config": config}
    labels.update({f"containerd.io/gc.ref.content.l.{i}": layer for i, layer in enumerate(layers)})
    return labels


CONTENT = "\n".join(
    [
        "DIGEST\tSIZE\tAGE\tLABELS",
        _line(MANIFEST_LEGACY, **_manifest(CONFIG, L0, L1)),
        _line(MANIFEST_OCI, **_manifest(CONFIG, L0, L1)),
        _line(
            INDEX,
            **{
                "containerd.io/gc.ref.content.m.0": OTHER_PLATFORM,
                "containerd.io/gc.ref.content.m.1": MANIFEST_OCI,
            },
        ),
        _line(CONFIG, **{"containerd.io/gc.ref.snapshot.overlayfs": TOP}),
        _line(L0, **{"containerd.io/uncompressed": L0}),
        _line(L1, **{"containerd.io/uncompressed": L1}),
        "not-a-digest\t1B\tnow\tx=y",
    ]
)


def catalog(images: str = IMAGES, content: str = CONTENT) -> Catalog:
    return Catalog(parse_images(images), parse_content(content))


def test_an_images_listing_maps_each_name_to_its_target_and_skips_malformed_lines() -> None:
    names = parse_images(IMAGES)
    assert names == {
        "docker.io/acme/web:1": MANIFEST_LEGACY,
        CONFIG: MANIFEST_OCI,
        "docker.io/acme/multi:1": INDEX,
    }


def test_a_content_listing_keeps_each_blobs_labels_and_skips_malformed_lines() -> None:
    content = parse_content(CONTENT)
    assert content[L0] == {"containerd.io/uncompressed": L0}
    assert content[MANIFEST_OCI]["containerd.io/gc.ref.content.config"] == CONFIG
    assert "not-a-digest" not in content


def test_the_version_under_a_name_is_the_config_its_manifest_names() -> None:
    assert catalog().config("docker.io/acme/web:1") == CONFIG
    assert catalog().config(CONFIG) == CONFIG  # the CRI's own name for it
    assert catalog().config("docker.io/acme/none:1") is None


def test_an_index_stands_for_its_manifest_that_was_unpacked_here() -> None:
    assert catalog().manifest(INDEX) == MANIFEST_OCI  # the other platform's is not here
    assert catalog().config("docker.io/acme/multi:1") == CONFIG


def test_every_name_of_a_version_is_found() -> None:
    found = catalog().names_of(CONFIG)
    assert found == sorted(["docker.io/acme/web:1", CONFIG, "docker.io/acme/multi:1"])
    assert catalog().configs() == {CONFIG}


def test_the_layers_held_are_named_by_chain_id_with_the_blob_each_came_from() -> None:
    assert catalog().layer_blobs() == {chain_ids((L0,))[0]: L0, TOP: L1}


def test_a_layer_whose_blob_is_gone_is_not_held_nor_any_layer_above_it() -> None:
    without_l0 = "\n".join(line for line in CONTENT.splitlines() if not line.startswith(L0))
    assert catalog(content=without_l0).layer_blobs() == {}
    without_l1 = "\n".join(line for line in CONTENT.splitlines() if not line.startswith(L1))
    assert catalog(content=without_l1).layer_blobs() == {chain_ids((L0,))[0]: L0}


def test_an_image_that_was_never_unpacked_holds_no_layers() -> None:
    not_unpacked = CONTENT.replace("containerd.io/gc.ref.snapshot.overlayfs", "other")
    assert catalog(content=not_unpacked).layer_blobs() == {}


def test_a_compressed_blob_is_held_under_the_chain_of_its_diff_id() -> None:
    gz = (
        CONTENT.replace(f"l.1={L1}", f"l.1={GZ}")
        + "\n"
        + _line(GZ, **{"containerd.io/uncompressed": L1})
    )
    assert catalog(content=gz).layer_blobs()[TOP] == GZ


def test_layers_are_taken_in_their_numbered_order_not_the_listings() -> None:
    reordered = CONTENT.replace(
        f"containerd.io/gc.ref.content.l.0={L0},containerd.io/gc.ref.content.l.1={L1}",
        f"containerd.io/gc.ref.content.l.1={L1},containerd.io/gc.ref.content.l.0={L0}",
    )
    assert reordered != CONTENT
    assert catalog(content=reordered).layer_blobs() == {chain_ids((L0,))[0]: L0, TOP: L1}
