"""A minimal valid run record (the schema's required fields), for the record tests and the
recipe tests that check their entries against the schema."""

RECORD = {
    "schema_version": 1, "kdbench_version": "0.1.0", "git_hash": None, "run_id": "20260101-000000-quickstart-abc123",
    "created": "2026-01-01T00:00:00+00:00", "suite": "quickstart", "config": {"eval": {"ece_bins": 15}},
    "environment": {"dtype": "bf16"}, "seeds": [0],
    "models": {"teacher": {"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": "abc", "params": 22713986},
               "student": {"id": "models/sst2/student", "revision": None, "params": 15616130}},
    "datasets": {"sst2": {"id": "nyu-mll/glue", "config": "sst2", "split": "validation", "rows": 872,
                          "sha256": "0" * 64}},
    "results": {"sst2": {"teacher": {"accuracy": {"value": 0.87, "ci": [0.85, 0.89]}},
                         "student": {"accuracy": {"value": 0.82, "ci": [0.80, 0.85]}}}},
    "pairs": {"sst2": {"student|teacher": {"probability_loyalty": {"value": 0.8, "ci": None}}}},
    "efficiency": {"teacher": {"params": 22713986, "latency_ms_b1": 4.0, "latency_ms_b32": 0.5,
                               "throughput_eps": 2000.0, "peak_rss_mb": 700.0}},
}
