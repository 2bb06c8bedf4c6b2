"""Connectors: turn vision-tower frame features [B, T, P, Dv] into language-model embeddings [B, Q, D].

- `group`: the video-level group resampler of TinyLLaVA-Video. All frames' tokens form one sequence,
  split into `group` contiguous chunks; one Perceiver with shared latents resamples each chunk; a
  sinusoidal position encoding is added to the concatenated result.
- `naive`: the naive video-level resampler: position encoding on the media, then one Perceiver over
  the whole sequence.
- `image`: an image-level resampler: each frame is resampled on its own, no position encoding.
- `mlp`: a per-token MLP projection (every patch token becomes one embedding).
- `words`: every patch token becomes the language model's own words for what a vision tower's attribute head
  sees there (colour, shape, place) and for what happens to that object between frames (moves, appears,
  disappears, turns); for towers trained with the vision stage's `attributes` objective. No published model
  has it.
- `object_words`: the `words` connector's words, one word a token: for each of the (at most) four most
  visible objects of every frame, in reading order, four tokens (its colour, its shape, its place, what
  happens to it), so the visual tokens read like a caption. No published model has it.

Each connector class owns what the rest of the code knows about it: its name in a config
(`connector_type`), the names published checkpoints give it, the settings it needs and how many
embeddings it makes of a video. It reads the model config's fields (`hidden_size`, `vision_config`,
`num_queries`, `group`, `num_resampler_layers`, `mlp_depth`, `tokens_per_frame`, `attribute_head`,
`num_frame_embeddings`).
Parameter names follow the published checkpoints (docs/published-format.md 1.5-1.6) so that weights map one to one.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from tinyvideo.errors import InputError


def sinusoidal_position_encoding(length: int, dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Sine/cosine position encoding [length, dim].

    Computed in float32 and rounded through float16 before the cast to `dtype`, because the published
    code stores it in a float16 buffer (docs/published-format.md 1.5); the rounding is kept for bit-compatibility.
    """
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float32, device=device)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.to(torch.float16).to(dtype)


class PerceiverAttention(nn.Module):
    """Latents attend to [media; latents] (media first, as published)."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        media, latents = self.norm_media(media), self.norm_latents(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class Connector:
    """What every connector declares. `published_names`: the names published checkpoints give it, the
    first being the one written on export."""

    connector_type: str
    published_names: tuple[str, ...] = ()

    @classmethod
    def published_name(cls, config) -> str:
        """`InputError` for a connector that has no published form."""
        if not cls.published_names:
            raise InputError(f"the {cls.connector_type} connector has no published form: the model cannot be exported")
        return cls.published_names[0]

    @classmethod
    def read_published_name(cls, name: str) -> dict | None:
        """The config settings a published connector name (lower case) stands for; None if not this connector's."""
        return {} if name in cls.published_names else None

    @staticmethod
    def check(config) -> None:
        """`ValueError` for settings this connector cannot take."""

    @staticmethod
    def num_visual_tokens(config, num_frames: int) -> int:
        """How many embeddings it makes of a video of `num_frames` frames."""
        raise NotImplementedError

    @staticmethod
    def settings_for_tokens(num_queries: int, num_frames: int) -> dict:
        """The settings besides `num_queries` under which it makes `num_queries` embeddings of a video of
        `num_frames` frames; `ValueError` when there are none."""
        return {}


class PerceiverResampler(Connector, nn.Module):
    """Projects vision features to the LM width and resamples a token sequence to a fixed set of latents
    (`num_latents(config)` of them)."""

    def __init__(self, config):
        super().__init__()
        dim = config.hidden_size
        self.latents = nn.Parameter(torch.randn(self.num_latents(config), dim))
        self.linear = nn.Linear(config.vision_config.hidden_size, dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim), feed_forward(dim)]) for _ in range(config.num_resampler_layers)
        )
        self.norm = nn.LayerNorm(dim)

    @staticmethod
    def num_latents(config) -> int:
        raise NotImplementedError

    def resample(self, media: torch.Tensor) -> torch.Tensor:
        """[B, n, D] projected media -> [B, num_latents, D]."""
        latents = self.latents.unsqueeze(0).expand(media.shape[0], -1, -1)
        for attention, ff in self.layers:
            latents = attention(media, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


class GroupedResampler(PerceiverResampler):
    """A resampler whose `num_queries` latents are shared out over `group` groups (of tokens, or of frames)."""

    @staticmethod
    def check(config) -> None:
        if config.num_queries % config.group:
            raise ValueError(f"num_queries ({config.num_queries}) must be divisible by group ({config.group})")

    @staticmethod
    def num_latents(config) -> int:
        return config.num_queries // config.group


class GroupResampler(GroupedResampler):
    connector_type = "group"
    published_names = ("groupresampler",)

    def __init__(self, config):
        super().__init__(config)
        self.groups = config.group

    @staticmethod
    def num_visual_tokens(config, num_frames: int) -> int:
        return config.num_queries

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        media = self.linear(frame_features.flatten(1, 2))
        batch, length, dim = media.shape
        if length < self.groups:
            raise ValueError(f"a video gives {length} visual tokens, fewer than the {self.groups} groups")
        # The first `length % groups` chunks are one token longer (torch.split sizes of the published code).
        base, longer = divmod(length, self.groups)
        cut = longer * (base + 1)
        chunks = [media[:, :cut].reshape(batch * longer, base + 1, dim), media[:, cut:].reshape(-1, base, dim)]
        outputs = [self.resample(c).unflatten(0, (batch, -1)) for c in chunks if c.shape[0]]
        latents = torch.cat(outputs, dim=1).flatten(1, 2)
        return latents + sinusoidal_position_encoding(latents.shape[1], dim, latents.dtype, latents.device)


class NaiveResampler(PerceiverResampler):
    connector_type = "naive"
    published_names = ("naiveresampler", "resamplerwithpe")  # its earlier published name

    @staticmethod
    def num_latents(config) -> int:
        return config.num_queries

    @staticmethod
    def num_visual_tokens(config, num_frames: int) -> int:
        return config.num_queries

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        media = self.linear(frame_features.flatten(1, 2))
        media = media + sinusoidal_position_encoding(media.shape[1], media.shape[2], media.dtype, media.device)
        return self.resample(media)


class ImageResampler(GroupedResampler):
    connector_type = "image"
    published_names = ("resampler",)

    @staticmethod
    def num_visual_tokens(config, num_frames: int) -> int:
        return config.num_queries // config.group * num_frames

    @staticmethod
    def settings_for_tokens(num_queries: int, num_frames: int) -> dict:
        if num_queries % num_frames:
            raise ValueError(
                f"num_queries {num_queries} is not a multiple of num_frames {num_frames}: no image-level match"
            )
        return {"group": num_frames}  # num_queries // group latents per frame

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        batch = frame_features.shape[0]
        latents = self.resample(self.linear(frame_features.flatten(0, 1)))
        return latents.unflatten(0, (batch, -1)).flatten(1, 2)


class PerPatchConnector(Connector):
    """A connector that makes one embedding per patch token: as many as the tower gives."""

    @staticmethod
    def num_visual_tokens(config, num_frames: int) -> int:
        return config.tokens_per_frame * num_frames

    @classmethod
    def settings_for_tokens(cls, num_queries: int, num_frames: int) -> dict:
        raise ValueError(f"the {cls.connector_type} connector makes one embedding per patch token: its count is the vision tower's")


class MlpConnector(PerPatchConnector, nn.Sequential):
    """Linear, then (depth - 1) x [GELU, Linear], applied to every patch token; published as `mlp{depth}x_gelu`."""

    connector_type = "mlp"
    published_names = ("mlp<N>x_gelu",)  # N: its depth

    def __init__(self, config):
        dim = config.hidden_size
        layers: list[nn.Module] = [nn.Linear(config.vision_config.hidden_size, dim)]
        for _ in range(config.mlp_depth - 1):
            layers += [nn.GELU(), nn.Linear(dim, dim)]
        super().__init__(*layers)

    @classmethod
    def published_name(cls, config) -> str:
        return f"mlp{config.mlp_depth}x_gelu"

    @classmethod
    def read_published_name(cls, name: str) -> dict | None:
        depth = re.fullmatch(r"mlp(\d+)x_gelu", name)
        return {"mlp_depth": int(depth.group(1))} if depth else None

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        return super().forward(frame_features.flatten(1, 2))


class WordsConnector(PerPatchConnector, nn.Module):
    """Each patch token f of frame t becomes

        p_colour[1:] @ colour_embeddings + p_shape[1:] @ shape_embeddings
        + (1 - p_colour[0]) * place_embeddings[patch] + event_weights @ event_embeddings
        + frame_embeddings[t] + residual(f)

    where p_colour, p_shape are the softmaxes of `attribute_head(f)`'s colour and shape logits (class 0:
    "none", an empty patch), laid out as the tower's attribute head (`config.attribute_head` says what its
    classes are), and `event_weights` say what happens to the patch's object between frames (`EVENT_WORDS`,
    `object_events`): a tower sees one frame at a time, so where and whether an object is in the frames
    before and after is told here, as two-stream video networks hand a frame difference to the model.
    A new model starts from the tower's head and the language model's embeddings of the colour, shape,
    place and event words (`initialise`), so the language model reads words it knows from the first step;
    every part trains.
    """

    connector_type = "words"
    has_residual = True
    EVENT_WORDS = ("moves right", "moves left", "moves down", "moves up", "appears", "disappears", "turns")

    def __init__(self, config):
        super().__init__()
        dim, vision_dim = config.hidden_size, config.vision_config.hidden_size
        self.num_colour_classes = len(config.attribute_head["colour_classes"])
        self.num_shape_classes = len(config.attribute_head["shape_classes"])
        self.attribute_head = nn.Linear(vision_dim, self.num_colour_classes + self.num_shape_classes + 2)
        self.colour_embeddings = nn.Parameter(torch.zeros(self.num_colour_classes - 1, dim))
        self.shape_embeddings = nn.Parameter(torch.zeros(self.num_shape_classes - 1, dim))
        self.place_embeddings = nn.Parameter(torch.zeros(config.tokens_per_frame, dim))
        self.event_embeddings = nn.Parameter(torch.zeros(len(self.EVENT_WORDS), dim))
        self.frame_embeddings = nn.Parameter(torch.zeros(config.num_frame_embeddings, dim))
        self.residual = nn.Linear(vision_dim, dim) if self.has_residual else None

    @staticmethod
    def check(config) -> None:
        head = config.attribute_head
        if not isinstance(head, dict) or not all(
            isinstance(head.get(key), list) and len(head[key]) > 1 for key in ("colour_classes", "shape_classes")
        ):
            raise ValueError(
                "connector_type words needs attribute_head: the tower's attribute classes "
                "(colour_classes, shape_classes, each led by 'none'), as a tower trained with the attributes objective has"
            )
        if config.num_frame_embeddings < 1:
            raise ValueError(f"num_frame_embeddings must be at least 1; got {config.num_frame_embeddings}")

    @torch.no_grad()
    def initialise(
        self,
        head: dict[str, torch.Tensor],
        colour_words: torch.Tensor,
        shape_words: torch.Tensor,
        place_words: torch.Tensor,
        event_words: torch.Tensor,
    ) -> None:
        """Start from a tower's attribute head (`weight` [classes, Dv], `bias` [classes]) and the embeddings
        of the colour words [colour classes - 1, D], shape words [shape classes - 1, D], each patch's
        place words [patches, D] and the `EVENT_WORDS` [events, D]; frame embeddings and residual start at
        zero."""
        self.attribute_head.load_state_dict(head)
        self.colour_embeddings.copy_(colour_words)
        self.shape_embeddings.copy_(shape_words)
        self.place_embeddings.copy_(place_words)
        self.event_embeddings.copy_(event_words)
        self.frame_embeddings.zero_()
        if self.residual is not None:
            nn.init.zeros_(self.residual.weight)
            nn.init.zeros_(self.residual.bias)

    def patch_words(self, frame_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For frame features [B, T, P, Dv]: each patch's words [B, T, P, 4, D] (colour, shape, place, event, as in
        the class docstring), what every token of the patch adds to them (`frame_embeddings[t] + residual(f)`,
        [B, T, P, D]) and how likely the patch is occupied (1 - p_colour[0], [B, T, P]). `ValueError` for more
        frames than it has frame embeddings."""
        frames = frame_features.shape[1]
        if frames > len(self.frame_embeddings):
            raise ValueError(f"the {self.connector_type} connector tells apart {len(self.frame_embeddings)} frames; the video has {frames}")
        logits = self.attribute_head(frame_features)
        colour = logits[..., : self.num_colour_classes].softmax(-1)
        shape = logits[..., self.num_colour_classes : self.num_colour_classes + self.num_shape_classes].softmax(-1)
        presence = 1 - colour[..., 0]
        words = torch.stack(
            [
                colour[..., 1:] @ self.colour_embeddings,
                shape[..., 1:] @ self.shape_embeddings,
                presence[..., None] * self.place_embeddings,
                object_events(colour, shape) @ self.event_embeddings,
            ],
            dim=3,
        )
        added = self.frame_embeddings[:frames, None]
        if self.residual is not None:
            added = added + self.residual(frame_features)
        return words, added.expand(*presence.shape, -1), presence

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        """[B, T, P, Dv] -> [B, T * P, D]; `ValueError` for more frames than it has frame embeddings."""
        words, added, _ = self.patch_words(frame_features)
        return (words.sum(3) + added).flatten(1, 2)


class ObjectWordsConnector(WordsConnector):
    """The `words` connector's parameters, laid out one word a token. In each frame the `OBJECTS_PER_FRAME`
    patches most likely occupied (1 - p_colour[0]) are taken in reading order (row major), and each becomes
    `WORDS_PER_OBJECT` tokens:

        p_colour[1:] @ colour_embeddings,  p_shape[1:] @ shape_embeddings,
        (1 - p_colour[0]) * place_embeddings[patch],  event_weights @ event_embeddings

    each plus `frame_embeddings[t]`. A frame with fewer objects fills its remaining slots with empty
    patches, whose words are near zero. The suite shows at most four objects a frame, so 8 frames give 128
    tokens, as many as the `words` connector makes of a 4 x 4 patch grid. It has no residual projection of
    the features: trained, the `words` connector's grows to about four times a word embedding's norm (13
    against SmolLM2's 3.2) and drowns the words.
    """

    connector_type = "object_words"
    has_residual = False
    OBJECTS_PER_FRAME = 4
    WORDS_PER_OBJECT = 4

    @classmethod
    def check(cls, config) -> None:
        super().check(config)
        if config.tokens_per_frame < cls.OBJECTS_PER_FRAME:
            raise ValueError(
                f"the {cls.connector_type} connector picks {cls.OBJECTS_PER_FRAME} patches a frame; the tower gives {config.tokens_per_frame}"
            )

    @classmethod
    def num_visual_tokens(cls, config, num_frames: int) -> int:
        return cls.OBJECTS_PER_FRAME * cls.WORDS_PER_OBJECT * num_frames

    @classmethod
    def settings_for_tokens(cls, num_queries: int, num_frames: int) -> dict:
        raise ValueError(
            f"the {cls.connector_type} connector makes {cls.OBJECTS_PER_FRAME * cls.WORDS_PER_OBJECT} embeddings a frame; its count is not a setting"
        )

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        """[B, T, P, Dv] -> [B, T * OBJECTS_PER_FRAME * WORDS_PER_OBJECT, D]; `ValueError` for more frames than
        it has frame embeddings."""
        words, added, presence = self.patch_words(frame_features)
        words = words + added[..., None, :]
        slots = presence.topk(self.OBJECTS_PER_FRAME, dim=-1).indices.sort(-1).values  # [B, T, OBJECTS_PER_FRAME]
        chosen = words.gather(2, slots[..., None, None].expand(-1, -1, -1, *words.shape[3:]))
        return chosen.flatten(1, 3)


def patch_cells(patches: int, device: torch.device) -> torch.Tensor:
    """(column, row) of each patch of a square grid, row major: [patches, 2]."""
    grid = math.isqrt(patches)
    rows, columns = torch.meshgrid(torch.arange(grid, device=device), torch.arange(grid, device=device), indexing="ij")
    return torch.stack([columns.flatten(), rows.flatten()], -1)


def object_events(colour: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """What happens to each patch's object between frames, as weights in [0, 1] of `WordsConnector.EVENT_WORDS`.

    `colour` [B, T, P, colours] and `shape` [B, T, P, shapes] are per-patch class probabilities (class 0:
    "none") on a square grid of P patches, row major. An object is its (colour, shape) pair; its match in
    a neighbouring frame is the probability that a patch there holds the same pair. Returns [B, T, P, 7]:
    - moves right / left / down / up: the matched patches' displacement (in patches, summed over the step
      from the frame before and the step to the frame after, clipped to [0, 1] per direction);
    - appears: the object is here and was nowhere in the frame before, nor was its shape at this patch;
    - disappears: it is nowhere in the frame after, nor is its shape at this patch;
    - turns: it was nowhere in the frame before but its shape was at this patch (a colour change).
    The first frame has no "appears" or "turns", the last no "disappears". Differentiable throughout.
    """
    identity = (colour[..., 1:, None] * shape[..., None, 1:]).flatten(-2)  # [B, T, P, colours * shapes]
    present = 1 - colour[..., 0]
    matches = identity[:, 1:] @ identity[:, :-1].transpose(-1, -2)  # [B, T-1, P at t+1, Q at t]
    cells = patch_cells(colour.shape[2], colour.device).to(colour.dtype)
    offsets = cells[:, None] - cells[None]  # [P, Q, 2]: from patch q to patch p
    step = torch.einsum("btpq,pqc->btpc", matches, offsets)  # at t+1: where from, weighted by the match
    back = torch.einsum("btpq,pqc->btqc", matches, offsets)  # at t: where to
    moved = F.pad(step, (0, 0, 0, 0, 1, 0)) + F.pad(back, (0, 0, 0, 0, 0, 1))  # [B, T, P, 2]
    directions = torch.cat([moved, -moved], -1)[..., [0, 2, 1, 3]].clamp(0, 1)  # right, left, down, up
    came = F.pad(matches.sum(-1).clamp(max=1), (0, 0, 1, 0), value=1.0)  # [B, T, P]: in the frame before
    stays = F.pad(matches.sum(-2).clamp(max=1), (0, 0, 0, 1), value=1.0)  # in the frame after
    same_shape = (shape[:, 1:, :, 1:] * shape[:, :-1, :, 1:]).sum(-1)  # [B, T-1, P]
    shape_before = F.pad(same_shape, (0, 0, 1, 0))
    shape_after = F.pad(same_shape, (0, 0, 0, 1))
    new = present * (1 - came)
    appears = new * (1 - shape_before)
    disappears = present * (1 - stays) * (1 - shape_after)
    turns = new * shape_before
    return torch.cat([directions, torch.stack([appears, disappears, turns], -1)], -1)


CONNECTORS: dict[str, type[Connector]] = {
    c.connector_type: c for c in (GroupResampler, NaiveResampler, ImageResampler, MlpConnector, WordsConnector, ObjectWordsConnector)
}


def build_connector(config) -> nn.Module:
    return CONNECTORS[config.connector_type](config)
