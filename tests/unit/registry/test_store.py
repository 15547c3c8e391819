import os
import threading
import time
from pathlib import Path

import pytest

from pipeline.registry.store import (
    KeyExistsError,
    LocalStore,
    ObjectTooLargeError,
    S3Store,
    StoreError,
    open_store,
)


def test_open_store_picks_the_backend_from_the_uri(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    s3 = open_store("s3://bucket/some/prefix", s3_client=lambda: object())  # type: ignore
    assert isinstance(s3, S3Store)
    assert s3.location("datasets/x.csv") == "s3://bucket/some/prefix/datasets/x.csv"
    with pytest.raises(StoreError, match="names no bucket"):
        open_store("s3://")
    with pytest.raises(StoreError, match="neither"):
        open_store("gs://bucket")


def test_local_store_lists_writes_and_reads_like_a_bucket(store: LocalStore) -> None:
    assert store.list_keys("datasets/") == []
    store.put_new("datasets/a.csv", b"1")
    store.put_new("datasets/sub/b.csv", b"2")
    store.put_new("models/m.json", b"3")
    assert store.list_keys("datasets/") == ["datasets/a.csv", "datasets/sub/b.csv"]
    assert store.get_bytes("datasets/sub/b.csv") == b"2"


def test_local_store_never_overwrites_and_leaves_no_temporary_files(store: LocalStore) -> None:
    store.put_new("models/m.joblib", b"first")
    with pytest.raises(KeyExistsError, match="exists already"):
        store.put_new("models/m.joblib", b"second")
    assert store.get_bytes("models/m.joblib") == b"first"
    assert os.listdir(store.root / "models") == ["m.joblib"]


def test_concurrent_writers_of_one_key_leave_exactly_one_whole_object(store: LocalStore) -> None:
    outcomes = []
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        barrier.wait()
        try:
            store.put_new("models/race.bin", bytes([i]) * 1_000_000)
            outcomes.append("won")
        except KeyExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["won"]
    data = store.get_bytes("models/race.bin")
    assert len(data) == 1_000_000 and len(set(data)) == 1


def test_local_store_errors_name_the_location(store: LocalStore) -> None:
    with pytest.raises(StoreError, match=str(store.root / "datasets/none.csv")):
        store.get_bytes("datasets/none.csv")
    with pytest.raises(StoreError, match="outside the store"):
        store.get_bytes("../../etc/passwd")


def test_local_store_refuses_an_object_over_the_size_limit_without_reading_it(
    store: LocalStore,
) -> None:
    store.put_new("models/big.json", b"x" * 101)
    assert store.get_bytes("models/big.json", max_bytes=101) == b"x" * 101
    with pytest.raises(ObjectTooLargeError, match=r"big.json is 101 bytes, over the limit of 100"):
        store.get_bytes("models/big.json", max_bytes=100)


@pytest.mark.parametrize("make", ["fifo", "directory"])
def test_local_store_refuses_a_named_pipe_or_folder_at_once(store: LocalStore, make: str) -> None:
    path = store.root / "models" / "special.joblib"
    path.parent.mkdir(parents=True)
    os.mkfifo(path) if make == "fifo" else path.mkdir()
    started = time.monotonic()
    kind = "a named pipe" if make == "fifo" else "a directory"
    with pytest.raises(StoreError, match=f"special.joblib: not a regular file \\({kind}\\)"):
        store.get_bytes("models/special.joblib")
    assert time.monotonic() - started < 5


def test_local_store_lists_objects_with_size_and_age_and_hidden_ones_on_demand(
    store: LocalStore,
) -> None:
    store.put_new("models/a.json", b"123")
    (store.root / "models" / ".tmp-x").write_bytes(b"1")
    os.mkfifo(store.root / "models" / "pipe")
    objects = store.list_objects("models/")
    assert [(o.key, o.size) for o in objects] == [("models/a.json", 3)]
    assert abs(objects[0].modified - time.time()) < 60
    assert [o.key for o in store.list_objects("models/", hidden=True)] == [
        "models/.tmp-x",
        "models/a.json",
    ]
    store.remove_leftover("models/.tmp-x")
    assert not (store.root / "models" / ".tmp-x").exists()
    with pytest.raises(StoreError, match="not a regular file"):
        store.remove_leftover("models/pipe")
