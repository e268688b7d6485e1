"""The text models' names, apart from models/text.py so that checking a config imports no torch."""

TEXT_MODELS = ("minilm", "hf", "bert_tiny", "bert_mini")
