"""facecast server side: CLI, offline rendering, media output (and later the live server)."""
