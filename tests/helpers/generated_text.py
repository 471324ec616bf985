"""What tests/unit/tasks/test_generated_text.py and tests/integration/eval/test_generated_text.py share."""


LM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
