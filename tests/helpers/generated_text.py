"""The model the generated-text tests score."""


LM_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
