"""A generation's vector index (pure): the types there are, where each exists, and the
search parameters a search for a page gets."""

from __future__ import annotations

import pytest

from catalens.errors import OperatorError
from catalens.store.indexes import IndexSpec, offered
from catalens.store.values import ServerFeatures


def test_a_search_gets_the_generations_parameters_under_the_overrides() -> None:
    spec = IndexSpec.of("IVF_SQ8", search={"nprobe": 48})
    assert spec.search_params(10) == {"nprobe": 48}
    assert spec.search_params(10, {"nprobe": 64}) == {"nprobe": 64}


def test_ef_and_search_list_are_raised_to_cover_the_page() -> None:
    assert IndexSpec.of("HNSW", search={"ef": 16}).search_params(100) == {"ef": 100}
    assert IndexSpec.of("DISKANN", search={"search_list": 10}).search_params(50) == {
        "search_list": 50
    }


def test_nprobe_is_at_most_the_lists_the_generation_was_built_with() -> None:
    """A generation of 16 lists probes all 16 for the default 128, whatever the server
    would say of a probe count above its lists."""
    assert IndexSpec.of("IVF_SQ8", {"nlist": 16}).search_params(10) == {"nprobe": 16}
    assert IndexSpec.of("IVF_FLAT").search_params(10)["nprobe"] == 128


def test_the_defaults_are_the_measured_operating_points() -> None:
    """docs/scale.md: the smallest parameter reaching recall@10 >= 0.95 for text-like
    queries at 500K products."""
    assert IndexSpec.of("HNSW").search == {"ef": 192}
    assert IndexSpec.of("IVF_SQ8").search == {"nprobe": 128}
    assert IndexSpec.of("IVF_SQ8").params == {"nlist": 1706}


def test_an_unknown_index_type_names_the_ones_there_are() -> None:
    with pytest.raises(OperatorError, match="HNSW, HNSW_SQ, IVF_FLAT"):
        IndexSpec.of("ANNOY")


@pytest.mark.parametrize(
    ("version", "has", "lacks"),
    [
        ("v2.3.5", {"HNSW", "IVF_SQ8", "IVF_PQ", "DISKANN"}, {"HNSW_SQ"}),
        ("v2.6.1", {"HNSW_SQ", "DISKANN"}, set()),
        ("milvus_lite-3.2.2", {"HNSW", "HNSW_SQ", "IVF_SQ8"}, {"IVF_PQ", "DISKANN"}),
    ],
)
def test_the_types_offered_follow_the_servers_version(
    version: str, has: set[str], lacks: set[str]
) -> None:
    there = set(offered(ServerFeatures.from_version(version)))
    assert has <= there
    assert not lacks & there
    spec = IndexSpec.of(next(iter(lacks))) if lacks else None
    if spec is not None:
        with pytest.raises(OperatorError, match=f"not offered by Milvus {version}"):
            spec.check(ServerFeatures.from_version(version))
