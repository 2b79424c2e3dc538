"""Adapters that give voice-agent frameworks a facecast face.

Each adapter talks to a running `facecast serve` the way any client does, so it
runs in the framework's own environment, which may not be able to install the
engines (Pipecat needs protobuf >= 5, mediapipe 0.10.21 needs protobuf < 5):

- `session_link`: a framework-neutral link to one session (speech up over the
  stream WebSocket, face and audio down over WebRTC). Needs only the packages of
  `server.client`.
- `pipecat`: `FacecastVideoService`, a Pipecat frame processor (needs pipecat-ai).
- `livekit`: `FacecastVideoGenerator` (LiveKit's `VideoGenerator` for `AvatarRunner`)
  and `FacecastAvatarSession` (the agent's side); `livekit_worker`: the avatar worker
  that LiveKit dispatches by facecast's load (needs livekit-agents).

Nothing is imported here, so `import server.integrations` never needs a framework.
"""
