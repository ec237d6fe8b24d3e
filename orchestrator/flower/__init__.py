"""`lr flower`: Flower on our broker, authenticated, read-only, showing no command's content."""
