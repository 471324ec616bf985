"""Loading teachers and students (hub id or path), building students, caching fine-tuned teachers."""
