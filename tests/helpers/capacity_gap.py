"""The capacity-gap sweeps' test models and tiny settings (unit, integration and Ray tests)."""

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TINY = ["--set", "data.train_rows=64", "--set", "data.eval_rows=64", "--set", "distill.epochs=1",
        "--set", "teacher.finetune.epochs=1", "--set", "max_length=32", "--set", "eval.efficiency=false",
        "--set", "baseline=false", "--set", "eval.bootstrap_samples=200"]
