"""facecast engines: portrait encoding, audio features, motion, rendering.

Data flows one way: server/ calls engines/; engines/ never imports server/.
"""
