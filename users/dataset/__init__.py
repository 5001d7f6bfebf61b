"""The staff dataset pages (counts, histogram, people), PRISM upload, and JSONL downloads."""
