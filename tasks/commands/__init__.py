"""One pydantic model for each command's arguments and one for its result, by command family."""
