"""The control plane: identity, sessions, audit, dispatch, API and CLI of liveresponse."""
