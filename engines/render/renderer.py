"""FaceRenderer: Avatar + motion vectors -> RGB frames, in torch tensor ops (CPU or CUDA).

Per frame:
1. landmarks = neutral + expression coefficients x basis, then the head pose
   (rotation about a pivot behind the face, scale, translation);
2. mesh vertices (landmarks + anchors that follow the head partly) give a
   forward displacement at every field pixel through the precomputed bindings;
3. a few fixed-point steps invert it into a backward map (where each output
   pixel reads from), exact for smooth fields and cheap;
4. eyelids and gaze adjust that map in output space (engines.render.eyes);
5. the portrait and its person mask are resampled together and composited
   over the background plate, so head motion never tears the hair or neck;
6. the mouth interior is painted where the lips part (engines.render.mouth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..face import landmarks as fl
from ..face.avatar import Avatar
from ..face.expression_basis import FaceFrame, build_expression_basis, lips_together
from ..face.image_io import LUMA_WEIGHTS
from ..face.mesh import NUM_FACE_VERTICES
from ..motion.space import EXPRESSION_NAMES, MOTION_DIM, POSE_NAMES, index_of
from .eyes import EYES, LID_REST, eye_centre, eye_offsets, lid_cover
from .mouth import mouth_interior, mouth_palette, portrait_tone, without_mouth_interior
from .warp_ops import pixel_grid, rotation_matrix, sample_at, take, window_index, window_origin

__all__ = ["RendererConfig", "FaceRenderer", "to_uint8_frames"]

_POSE = slice(0, len(POSE_NAMES))
_EXPR = slice(len(POSE_NAMES), len(POSE_NAMES) + len(EXPRESSION_NAMES))
_GAZE = slice(len(POSE_NAMES) + len(EXPRESSION_NAMES), MOTION_DIM)
_BLINK = (index_of("eyeBlinkRight"), index_of("eyeBlinkLeft"))
# Within the expression coefficients.
_JAW, _CLOSE = (EXPRESSION_NAMES.index(name) for name in ("jawOpen", "mouthClose"))
# Share of the socket's shadow a shut lid sheds: the lid bulges over the eyeball
# towards the light, so in photographs a closed lid is about as bright as the
# skin beside it, not a dark patch.
_LID_LIFT = 0.9
_LID_CHEEK_COLOUR = 0.8


@dataclass(frozen=True)
class RendererConfig:
    # Fixed-point steps inverting the forward warp. The error shrinks by the
    # field's own stretch per step, so turns converge slowest: at yaw 0.35 the
    # residual |s + d(s) - t| over the field is p99 1.1 px after 3 steps, 0.36
    # after 4 and 0.004 after 8 (la_velata); each step is one bilinear read of
    # the field, ~0.4 ms on one CPU thread. Inside an opening mouth no source
    # pixel exists and it never converges, but the interior is painted there.
    inverse_iterations: int = 4
    # Head rotation pivot, behind the face by this share of the face width.
    pivot_depth: float = 0.55
    # A 2D warp cannot show what a turn hides, so depth is flattened: the far
    # cheek then compresses instead of folding over itself on large yaws.
    depth_scale: float = 0.6
    # Share of the landmarks' own depth relief (nose, brows) kept beyond a smooth
    # head surface: raw per-point depth is noisy near the silhouette, where it
    # makes neighbouring points overtake each other and tear the turning cheek.
    depth_detail: float = 0.5


class FaceRenderer(nn.Module):
    """Renders one avatar. forward(motion (B, D)) -> float (B, 3, S, S) in [0, 1]."""

    # Buffers (register_buffer below), declared so the type checker knows them.
    layer: torch.Tensor  # 1x4xSxS: RGB premultiplied by the person mask, 1 - mask
    background: torch.Tensor  # 1x3xSxS
    landmarks: torch.Tensor  # 478x3
    basis: torch.Tensor  # Kx478x3
    pivot: torch.Tensor  # 3
    depth_weights: torch.Tensor  # 3
    anchors: torch.Tensor  # Ax3
    anchor_follow: torch.Tensor  # A
    source_xy: torch.Tensor  # Vx2
    bind_corners: torch.Tensor  # 3xP (long): each field pixel's triangle corners
    bind_corner_weights: torch.Tensor  # 3xPx1: their barycentric weights
    field_points: torch.Tensor
    output_points: torch.Tensor
    iris_radius: torch.Tensor  # 2
    palette: torch.Tensor
    lid_tone: torch.Tensor  # 1x4x(2*side*side): per eye, its cheek's colour per unit luma, luma
    lash_colour: torch.Tensor  # 3
    luma_weights: torch.Tensor  # 1x3x1

    def __init__(self, avatar: Avatar, config: RendererConfig | None = None) -> None:
        super().__init__()
        self.config = config or RendererConfig()
        self.image_size = avatar.image_size
        self.field_size = avatar.mesh.field_size
        mesh = avatar.mesh
        lm = avatar.landmarks.astype(np.float32)
        frame = FaceFrame(lm)
        self.face_scale = frame.scale
        oval = lm[list(fl.FACE_OVAL)]
        face_width = float(np.ptp(oval[:, 0]))
        pivot = np.array(
            [
                oval[:, 0].mean(),
                oval[:, 1].mean(),
                np.median(oval[:, 2]) + self.config.pivot_depth * face_width,
            ],
            dtype=np.float32,
        )
        self.face_width = face_width
        portrait = without_mouth_interior(avatar.image, lm)
        image = torch.from_numpy(portrait).permute(2, 0, 1).float() / 255.0
        mask = torch.from_numpy(avatar.person_mask)[None]
        # Premultiplied, with the background's share instead of the mask: bilinear
        # reads of both stay exact (they are linear), the composite is one fused
        # multiply-add per pixel instead of four full-frame passes, and colour from
        # outside the person cannot bleed into the soft mask edge.
        self.register_buffer("layer", torch.cat([image * mask, 1.0 - mask])[None])  # 1x4xSxS
        background = torch.from_numpy(avatar.background).permute(2, 0, 1).float() / 255.0
        self.register_buffer("background", background[None])
        # Neutral motion means lips together, even on a photo taken mid-word.
        shaped = lm + lips_together(lm)
        shaped[:, 2] = _smooth_depth(lm, self.config.depth_detail)
        self.register_buffer("landmarks", torch.from_numpy(shaped))
        # Head rings took the depth of the silhouette point they extend: keep them so.
        anchors = mesh.vertices[NUM_FACE_VERTICES:].copy()
        rim = list(fl.FACE_OVAL)
        nearest = np.linalg.norm(anchors[:, None, :2] - lm[None, rim, :2], axis=-1).argmin(1)
        moved = mesh.follow[NUM_FACE_VERTICES:] > 0
        anchors[moved, 2] += (shaped[rim, 2] - lm[rim, 2])[nearest[moved]]
        self.register_buffer("basis", torch.from_numpy(build_expression_basis(lm)))
        self.register_buffer("pivot", torch.from_numpy(pivot))
        self.register_buffer("depth_weights", torch.tensor([1.0, 1.0, self.config.depth_scale]))
        self.register_buffer("anchors", torch.from_numpy(anchors))
        self.register_buffer("anchor_follow", torch.from_numpy(mesh.follow[NUM_FACE_VERTICES:]))
        self.register_buffer("source_xy", torch.from_numpy(mesh.vertices[:, :2]))
        corners = torch.from_numpy(mesh.bind_vertices).long().t().contiguous()  # 3x(R*R)
        self.register_buffer("bind_corners", corners)
        weights = torch.from_numpy(mesh.bind_weights).t()[..., None].contiguous()
        self.register_buffer("bind_corner_weights", weights)  # 3x(R*R)x1
        self.register_buffer("field_points", pixel_grid(self.field_size, self.image_size))
        self.register_buffer("output_points", pixel_grid(self.image_size, self.image_size))
        self.register_buffer("iris_radius", torch.from_numpy(_iris_radii(lm)))
        self.register_buffer("lash_colour", torch.from_numpy(_lash_colour(avatar.image, lm)))
        self.register_buffer("luma_weights", torch.from_numpy(LUMA_WEIGHTS)[None, :, None])
        tint, colour_share = portrait_tone(avatar.image)
        self.register_buffer("palette", mouth_palette(_skin_colour(avatar), tint, colour_share))
        # Windows sized from the neutral face with room for a wide-open jaw and head scale.
        mouth_width = float(np.linalg.norm(lm[291, :2] - lm[61, :2]))
        self.mouth_window = min(self.image_size, int(np.ceil(mouth_width * 2.6 / 8) * 8))
        # The wider eye: in half-profile the near eye is much the wider of the two.
        eye_width = max(float(np.linalg.norm(lm[up[-1], :2] - lm[up[0], :2])) for up, _, _ in EYES)
        # Output pixels around each eye that a shut lid can cover.
        self.lid_window = min(self.image_size, int(np.ceil(eye_width * 1.6 / 8) * 8))
        # Each lid is lit like the cheek under its own eye: on a face lit from one
        # side the two sockets differ by 2x, and one tone for both leaves one lid a
        # dark patch while the other glows.
        tone = torch.from_numpy(_cheek_tone(avatar.image, lm))  # 2x4
        per_pixel = tone.repeat_interleave(self.lid_window**2, dim=0).t()[None]
        self.register_buffer("lid_tone", per_pixel.contiguous())
        self.lid_blur = max(3, int(0.25 * eye_width) | 1)
        self.eye_window = min(
            self.field_size, int(np.ceil(eye_width * 2.4 / (self.image_size / self.field_size)))
        )

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """motion: float (B, D) -> RGB float (B, 3, S, S) in [0, 1]."""
        return self.draw(motion, self.needs_lid_pass(motion))

    def draw(self, motion: torch.Tensor, lids: bool) -> torch.Tensor:
        """forward with the lid pass on or off as told: a traced graph of each (the CPU
        backend's) replays exactly what forward draws for motion whose needs_lid_pass
        says the same."""
        _check_motion(motion)
        vertices, landmarks_out = self.mesh_vertices(motion)
        backward = self._backward_map(vertices - self.source_xy)  # BxRxRx2
        offsets = self._eye_offsets(landmarks_out, motion)
        backward = sample_at(
            backward.permute(0, 3, 1, 2), self.field_points + offsets, self.image_size
        )
        # grid_sample's [-1, 1] coordinates, taken at the field's resolution: the map is
        # upsampled linearly, so this is exact and costs a quarter of doing it per pixel.
        grid = F.interpolate(
            backward * (2.0 / self.image_size) - 1.0,
            size=self.image_size,
            mode="bilinear",
            align_corners=False,
        )
        layer = F.grid_sample(
            self.layer.expand(motion.shape[0], -1, -1, -1),
            grid.permute(0, 2, 3, 1),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        out = torch.addcmul(layer[:, :3], self.background, layer[:, 3:])
        if lids:
            out = self._lighten_lids(out, landmarks_out, take(motion, _BLINK))
        return self._paint_mouth(out, landmarks_out).clamp_(0.0, 1.0)

    def needs_lid_pass(self, motion: torch.Tensor) -> bool:
        """Whether forward runs the lid pass for motion (B, D): see _lids_may_close."""
        _check_motion(motion)
        return self._lids_may_close(take(motion, _BLINK))

    @staticmethod
    def _lids_may_close(blink: torch.Tensor) -> bool:
        """False only when every lid is at rest, where the lid pass changes no pixel.

        Eager CPU only: reading the value is free there, and most frames have open
        eyes (the CPU backend replays a traced graph with the pass and one without,
        chosen the same way). Traced, exported or on a GPU the pass always runs (no
        host sync, one graph for every input).
        """
        if blink.device.type != "cpu" or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return True
        return bool((blink > LID_REST).any())

    def _lighten_lids(
        self, frames: torch.Tensor, landmarks: torch.Tensor, blink: torch.Tensor
    ) -> torch.Tensor:
        """Lid skin over a shut eye, lifted towards the cheek's brightness where the
        socket's shadow made it darker, in a window around each eye."""
        b, s, side = frames.shape[0], self.image_size, self.lid_window
        covers, lashes, indices = [], [], []
        for eye in range(2):
            origin = window_origin(eye_centre(landmarks, eye), side, s)
            points = self.output_points[:, :side, :side] + origin[:, None, None, :]
            skin, lash = lid_cover(points, landmarks, blink, 1.0, eye)
            covers.append(skin.reshape(b, 1, -1))
            lashes.append(lash.reshape(b, 1, -1))
            indices.append(window_index(origin, side, s))
        # Both windows in one write. Where they overlap (between close-set eyes) neither
        # lid covers anything, so both carry the same unchanged pixels.
        covered = torch.cat(covers, -1)
        index = torch.cat(indices, -1)[:, None, :].expand(-1, 3, -1)
        flat = frames.reshape(b, 3, s * s)
        region = flat.gather(2, index)
        luma = (region * self.luma_weights).sum(1, keepdim=True)
        # The lid sheds the socket's shadow: the shortfall of the smoothed luma from
        # the cheek's is added in the cheek's own colour, so the lid keeps its grain
        # and fine modelling, and brown shadow does not turn orange as under a gain.
        # Brighter pixels and the lash line keep theirs. The cover's edges are softened
        # outwards with the luma: its ends at the eye's corners and its top at the open
        # lid's line are sharp, and on a deep socket the lit lid stood out as a cut-out.
        both = torch.cat([luma, covered], 1).view(b, 2, 2, side, side).transpose(1, 2)
        smooth = both.reshape(b * 2, 2, side, side)
        # A box filter is separable: two 1D passes cost 2k, not k*k, per pixel.
        for kernel, pad in (
            ((self.lid_blur, 1), (self.lid_blur // 2, 0)),
            ((1, self.lid_blur), (0, self.lid_blur // 2)),
        ):
            smooth = F.avg_pool2d(smooth, kernel, stride=1, padding=pad, count_include_pad=False)
        smooth = smooth.view(b, 2, 2, side * side).transpose(1, 2).reshape(b, 2, -1)
        shading, covered = smooth[:, :1], torch.maximum(covered, smooth[:, 1:])
        change = (self.lid_tone[:, 3:] - shading).clamp(min=0.0) * _LID_LIFT
        lit = region + (covered * change) * self.lid_tone[:, :3]
        # Shadow and lashes are saturated brown; lifting them alone leaves an orange lid.
        # Most of the lid's colour is taken from the cheek at the lid's own brightness.
        lit_luma = (lit * self.luma_weights).sum(1, keepdim=True)
        lit = torch.lerp(lit, lit_luma * self.lid_tone[:, :3], _LID_CHEEK_COLOUR * covered)
        lit = torch.lerp(lit, self.lash_colour[None, :, None], torch.cat(lashes, -1))
        return flat.scatter_(2, index, lit).view(b, 3, s, s)

    def mesh_vertices(self, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where motion (B, D) puts the warp mesh's vertices (B, V, 2) and the 478
        landmarks (B, 478, 2), in output pixels (the mesh's triangles: avatar.mesh)."""
        pose, expr = motion[:, _POSE], motion[:, _EXPR]
        # mouthClose beyond jawOpen presses shut lips harder (ARKit): on screen the same
        # shut mouth, not the lower lip pushed up through the upper one.
        expr = torch.cat(
            [
                expr[:, :_CLOSE],
                torch.minimum(expr[:, _CLOSE : _CLOSE + 1], expr[:, _JAW : _JAW + 1]),
                expr[:, _CLOSE + 1 :],
            ],
            1,
        )
        shaped = self.landmarks + torch.einsum("bk,kvc->bvc", expr, self.basis)  # Bx478x3
        posed = self._apply_pose(shaped, pose)
        anchors = self._apply_pose(self.anchors.expand(motion.shape[0], -1, -1), pose)
        follow = self.anchor_follow[None, :, None]
        anchors_xy = self.anchors[None, :, :2] + follow * (
            anchors[..., :2] - self.anchors[None, :, :2]
        )
        vertices = torch.cat([posed[:, :NUM_FACE_VERTICES, :2], anchors_xy], 1)
        return vertices, posed[..., :2]

    def _eye_offsets(self, landmarks: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Lid and gaze offsets (B, R, R, 2), non-zero only in a window around each eye."""
        b, r, side = motion.shape[0], self.field_size, self.eye_window
        pixel = self.image_size / r
        radius = self.iris_radius * motion[:, 5:6]
        blink = take(motion, _BLINK)
        offsets = torch.zeros_like(self.field_points.reshape(1, r * r, 2).expand(b, -1, -1))
        for eye in range(2):
            origin = window_origin(eye_centre(landmarks, eye) / pixel, side, r)
            points = self.field_points[:, :side, :side] + origin[:, None, None, :] * pixel
            window = eye_offsets(points, landmarks, blink, motion[:, _GAZE], radius, pixel, eye)
            index = window_index(origin, side, r)[..., None].expand(-1, -1, 2)
            # Added, not written: the two windows may overlap between close-set eyes.
            offsets = offsets.scatter_add(1, index, window.reshape(b, side * side, 2))
        return offsets.view(b, r, r, 2)

    def _paint_mouth(self, frames: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """Paint the interior where the lips part, in a window around the mouth."""
        b, s, side = frames.shape[0], self.image_size, self.mouth_window
        centre = 0.5 * (landmarks[:, 13] + landmarks[:, 14])
        origin = window_origin(centre, side, s)
        points = self.output_points[:, :side, :side] + origin[:, None, None, :]
        alpha, colour = mouth_interior(points, landmarks, self.palette, 1.0)
        index = window_index(origin, side, s)[:, None, :].expand(-1, 3, -1)
        flat = frames.reshape(b, 3, s * s)
        region = flat.gather(2, index)
        painted = torch.lerp(region, colour.reshape(b, 3, -1), alpha.reshape(b, 1, -1))
        return flat.scatter_(2, index, painted).view(b, 3, s, s)

    def _apply_pose(self, points: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Rigid head motion of points (B, N, 3) by pose (B, 6) about the pivot."""
        rot = rotation_matrix(pose[:, 0], pose[:, 1], pose[:, 2])
        rel = (points - self.pivot) * self.depth_weights
        moved = torch.einsum("bij,bnj->bni", rot, rel) * pose[:, 5, None, None]
        shift = torch.stack([pose[:, 3], pose[:, 4], torch.zeros_like(pose[:, 3])], -1)
        return moved + self.pivot + shift[:, None, :] * self.face_width

    def _backward_map(self, displacement: torch.Tensor) -> torch.Tensor:
        """Vertex displacements (B, V, 2) -> backward map (B, R, R, 2) in crop pixels."""
        field = self._forward_field(displacement)
        target = self.field_points.expand(field.shape[0], -1, -1, -1)
        source = target
        last = self.config.inverse_iterations - 1
        for step in range(self.config.inverse_iterations):
            # The first step reads the field at its own pixel centres: the field itself.
            moved = field if step == 0 else self._read_field(field, source)
            update = target - moved
            # Damping the last step stops oscillation where the warp compresses strongly.
            source = update if step < last else 0.5 * (source + update)
        return source

    def _forward_field(self, displacement: torch.Tensor) -> torch.Tensor:
        """Vertex displacements (B, V, 2) -> where each field pixel's source moves to,
        as a displacement (B, R, R, 2) in crop pixels."""
        b, r = displacement.shape[0], self.field_size
        # One gather per triangle corner: three (B, R*R, 2) reads and fused multiply-adds
        # cost a quarter of one (B, R*R, 3, 2) gather followed by a product and a sum.
        forward = displacement.index_select(1, self.bind_corners[0]) * self.bind_corner_weights[0]
        for corner in (1, 2):
            forward = forward.addcmul(
                displacement.index_select(1, self.bind_corners[corner]),
                self.bind_corner_weights[corner],
            )
        return forward.view(b, r, r, 2)

    def _read_field(self, field: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Bilinear read of a (B, R, R, 2) field at points (B, R, R, 2) -> (B, R, R, 2)."""
        return sample_at(field.permute(0, 3, 1, 2), points, self.image_size).permute(0, 2, 3, 1)

    @torch.no_grad()
    def render(self, motion: np.ndarray) -> np.ndarray:
        """Convenience: motion (D,) or (T, D) -> uint8 frames (T, S, S, 3)."""
        batch = torch.from_numpy(np.atleast_2d(motion).astype(np.float32))
        frames = self.forward(batch.to(self.layer.device))
        return to_uint8_frames(frames).cpu().numpy()


def _check_motion(motion: torch.Tensor) -> None:
    if motion.ndim != 2 or motion.shape[1] != MOTION_DIM:
        raise ValueError(f"motion must be (B, {MOTION_DIM}), got {tuple(motion.shape)}")


def to_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """float (B, 3, S, S) in [0, 1] -> uint8 (B, S, S, 3), rounded to nearest; on frames' device.

    Packed (C-contiguous), not a channel-planar view: the video encoders' frame import
    (PyAV's VideoFrame.from_ndarray) copies a strided array pixel by pixel, 3.2 ms a
    512x512 frame on CPU, against 0.7 ms for packing it here and 0.1 ms to import it
    packed. The arithmetic runs on the planar layout, where it is contiguous.
    """
    return frames.mul(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _smooth_depth(landmarks: np.ndarray, detail: float) -> np.ndarray:
    """Landmark depth as a smooth head surface plus `detail` of each point's own relief.

    The surface is a quadratic in x, y fitted to the face landmarks; near the face
    oval only the surface is kept, so the silhouette turns as one smooth edge.
    """
    face = landmarks[: fl.RIGHT_IRIS[0]].astype(np.float64)  # the mesh points, irises after
    x, y = face[:, 0], face[:, 1]
    scale = float(np.ptp(x)) or 1.0
    u, v = (x - x.mean()) / scale, (y - y.mean()) / scale
    design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], 1)
    coef, *_ = np.linalg.lstsq(design, face[:, 2], rcond=None)
    px = (landmarks[:, 0] - x.mean()) / scale
    py = (landmarks[:, 1] - y.mean()) / scale
    surface = np.stack([np.ones_like(px), px, py, px * px, px * py, py * py], 1) @ coef
    oval = landmarks[list(fl.FACE_OVAL), :2]
    centre = oval.mean(0)
    reach = np.linalg.norm(oval - centre, axis=1).mean()
    inward = np.linalg.norm(landmarks[:, :2] - centre, axis=1) / reach
    keep = detail * np.clip((0.9 - inward) / 0.3, 0.0, 1.0)
    return (surface + keep * (landmarks[:, 2] - surface)).astype(np.float32)


def _cheek_tone(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Per eye, right first, (r, g, b, y): the colour per unit luminance and the
    luminance in [0, 1] of the cheek just below it, where the socket's shadow ends."""
    rgb = image.astype(np.float32) / 255.0
    size = image.shape[0]
    tones = []
    for lower in (fl.RIGHT_EYE_LOWER, fl.LEFT_EYE_LOWER):
        eye = landmarks[list(lower), :2]
        width = float(np.ptp(eye[:, 0]))
        x0, x1 = sorted(np.clip(eye[[2, -3], 0].astype(int), 0, size - 1))
        y = int(np.clip(eye[:, 1].max() + 0.45 * width, 0, size - 1))
        half = max(2, int(0.1 * width))
        patch = rgb[max(0, y - half) : y + half + 1, x0 : x1 + 1].reshape(-1, 3)
        colour = patch.mean(0)
        luma = float(colour @ LUMA_WEIGHTS)
        tones.append(np.append(colour / max(luma, 1e-3), luma))
    return np.stack(tones).astype(np.float32)


def _lash_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The portrait's own lash line: the darker pixels along both upper lid contours."""
    size = image.shape[0]
    samples = []
    for upper in (fl.RIGHT_EYE_UPPER, fl.LEFT_EYE_UPPER):
        for x, y in landmarks[list(upper[1:-1]), :2].astype(int):
            x, y = int(np.clip(x, 1, size - 2)), int(np.clip(y, 2, size - 2))
            samples.append(image[y - 2 : y + 2, x - 1 : x + 2].reshape(-1, 3))
    pixels = np.concatenate(samples).astype(np.float32) / 255.0
    luma = pixels @ LUMA_WEIGHTS
    dark = pixels[luma <= np.percentile(luma, 25)]
    return dark.mean(0).astype(np.float32)


def _iris_radii(landmarks: np.ndarray) -> np.ndarray:
    radii = []
    for iris in (fl.RIGHT_IRIS, fl.LEFT_IRIS):
        centre = landmarks[iris[0], :2]
        radii.append(np.linalg.norm(landmarks[list(iris[1:]), :2] - centre, axis=1).mean())
    return np.array(radii, dtype=np.float32)


def _skin_colour(avatar: Avatar) -> torch.Tensor:
    """Mean colour of the cheeks and chin, for tinting the mouth interior."""
    samples = avatar.landmarks[[50, 280, 152, 205, 425], :2].astype(int)
    samples = np.clip(samples, 2, avatar.image_size - 3)
    patches = [avatar.image[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3) for x, y in samples]
    return torch.from_numpy(np.concatenate(patches).mean(0).astype(np.float32) / 255.0)
