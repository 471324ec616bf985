"""Scripts the tests launch by path (python FILE, accelerate launch FILE). They live apart from the other
helpers: a script's folder comes first on its sys.path, and tests/helpers has modules named like packages
(packaging.py, tracking.py) that would shadow the real ones."""
