"""spinemodels: torch datasets, networks, training and inference over spinedata stores."""
