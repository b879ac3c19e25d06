"""Who may talk to regulars: sources with write keys, API keys with scopes."""
