"""lm-eval's command line with the ``kdbench`` model registered::

    python -m kdbench.lm_eval_cli --model kdbench --batch_size 16 \\
        --model_args pretrained=ID_OR_FOLDER,dtype=bf16 \\
        --tasks kdbench_sst2 --include_path kdbench/tasks/lm_eval_tasks

lm-eval 0.4.13 finds models only in its own registry, filled by imports (there is no plugin entry
point), so ``lm_eval --model kdbench`` cannot see kdbench's model by itself. This module imports
:mod:`kdbench.backends.lm_eval_model` (which registers it) and hands the arguments, unchanged, to
lm-eval's own ``cli_evaluate``: every lm-eval option and subcommand works as documented there.
"""
from __future__ import annotations


def main() -> None:
    from kdbench import threads

    threads.apply()  # before lm-eval imports torch
    from lm_eval.__main__ import cli_evaluate

    import kdbench.backends.lm_eval_model  # noqa: F401  (registers --model kdbench)

    cli_evaluate()


if __name__ == "__main__":
    main()
