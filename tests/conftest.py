import pytest

from tests.support.cluster import Cluster


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path)).start()
    try:
        c.leader()
        yield c
    finally:
        c.stop()
