def test_import():
    import m2ib
    assert "m2ib" in m2ib.METHODS
