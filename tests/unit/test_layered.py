import random

from node.layered import LayeredSortedMap


def test_layered_map_frozen_table_does_not_change_while_the_live_view_does():
    m = LayeredSortedMap((f"k{i:03d}", i) for i in range(100))
    frozen = m.freeze()
    before = dict(frozen)
    m["k005"] = "new"
    del m["k010"]
    m["zzz"] = 1
    assert dict(frozen) == before  # the snapshot sees exactly the state at freeze()
    assert m["k005"] == "new" and "k010" not in m and m.get("zzz") == 1 and len(m) == 100
    assert list(m.irange(minimum="k009"))[:3] == ["k009", "k011", "k012"]
    m.thaw()
    assert not m.frozen and m["k005"] == "new" and "k010" not in m and len(m) == 100


def test_layered_map_behaves_like_a_sorted_dict_under_random_changes():
    rng = random.Random(3)
    m, model = LayeredSortedMap(), {}
    for step in range(3000):
        if step % 500 == 0:
            m.freeze() if not m.frozen else m.thaw()
        key = f"k{rng.randrange(200):03d}"
        if rng.random() < 0.3 and key in model:
            del m[key]
            del model[key]
        else:
            m[key] = step
            model[key] = step
        assert len(m) == len(model)
    assert list(m.items()) == sorted(model.items())
    prefix = "k1"
    assert list(m.irange(minimum=prefix)) == sorted(k for k in model if k >= prefix)
