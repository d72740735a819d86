"""Dataset stage: sheets + videos -> records.jsonl -> rewrite -> review -> split -> export."""
