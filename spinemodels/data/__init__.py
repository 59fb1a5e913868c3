"""Torch datasets over spinedata stores."""
