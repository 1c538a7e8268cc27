"""GRCN (Wei et al., ACM MM'20): a GCN recommender whose graph is refined from item content.

Per modality m (item features x^m, e.g. image and audio):

  1. content  f_i = LeakyReLU(W_m x_i^m + b_m) [I, C]; user preference p_u^m [U, C] (learned);
     both L2-normalised with ``normalize`` (the official default; off by default here, below).
  2. routing (``routing`` iterations): alpha = softmax over u's items of cos(p_u, f_i), then
     p_u <- normalise(p_u + sum_i alpha_ui f_i): the preference moves towards the content of the
     items the user attends to (the paper's intent, ``routing_mode="paper"``). The official code
     runs this loop as a message pass that lands on the items, so the user rows it reads back are
     zero and p is only re-normalised (research/official_code.md, GRCN 2.2.4): that behaviour is
     ``routing_mode="official"`` (the loop is then skipped: it changes nothing).
  3. edge affinity, both directions, from the routed p: alpha^m_{i->u} = softmax over u's edges
     and alpha^m_{u->i} = softmax over i's edges of cos(p_u, f_i) (``ops.cosine_attention``,
     which also aggregates the modality's representations: user p_u + sum alpha f_i, item
     f_i + sum alpha p_u).

Edge weights per direction from the M affinities (``weight_mode``): ``mean``, ``max``, or
``confid`` (default): max_m alpha^m c^m_src, with a learned confidence c [(U + I), M] of the
message's source node (the item for a message to a user, the user for one to an item), initialised
to 1 (``confidence_init="ones"``, so the refined graph starts as ``max``; see ``GRCN.__init__`` for
why not the official Xavier init, still available as ``"xavier"``). Pruning:
``hard`` zeroes negative weights (ReLU; only ``confid`` can make them), ``soft`` keeps them
(the official README runs ``--is_pruning=False``, i.e. soft; its code default is hard).

The ID branch: ego embeddings X (normalised with ``normalize``), ``layers`` propagations
H^(k+1) = A_w H^(k) with the refined weights and no renormalisation (``ops.directed_spmm``; the
softmax already normalises per destination), id_rep = X + H^(1) + ... + H^(layers).

Prediction (``fusion``): ``concat`` [id_rep, content^1, ..., content^M] (default), ``mean``
(needs C = dim) or ``id``; score = dot product. Loss: BPR, plus ``decay`` * (|X_u|^2 + |X_pos|^2
+ |X_neg|^2 + sum_m |p^m_u|^2) / (2B) on the raw parameters (the official regulariser's terms,
summed like the toolkit's other models; per row this is 32-64x the official mean-over-entries
regulariser at the same coefficient). The whole graph is refined on every step, as in the
official code. Model selection is on validation (the official code early-stops on test).

Edge dropout (``edge_dropout``, the official ``--dropout``): each training step drops that share
of the edges at random before refining, and the whole step (affinities, both branches) runs on
what is left; evaluation and keep scores use every edge.

The defaults (``normalize=False``, ``edge_dropout=0.3``, ``decay=1e-3``; issue 23) are official
options chosen on TikTok validation, where the README's settings (normalised, dropout 0) overfit
within a few epochs: train BPR 0.12 at epoch 4 while valid Recall@20 peaked at 0.054, below
most-popular. Why: every representation of an item holds the sum of its training users' vectors
(H^(1)_i = sum_u alpha_ui X_u, content f_i + sum_u alpha_ui p_u), so the score of a training pair
carries a term alpha_ui |X_u|^2 (and alpha_ui |p_u|^2) that no unseen pair has, and the softmax
makes alpha_ui = 1 / deg(i), i.e. 1 on a single-user item (LightGCN's symmetric weight there is
1 / sqrt(deg(u))). Fitting that term is memorising the training edges. Dropping edges takes the
term away from the pairs whose edge is dropped, so the loss has to be lowered by what
generalises: valid Recall@20 0.082 -> 0.096 at lr 2e-3. With the normalisation, |X_u| = 1 caps
the term but GRCN ranks lower (valid 0.086: scores bounded, popularity not expressible as a
norm). bench/results/grcn_ablation.json holds the ablation, reproduction_grcn.json the seeds
against LightGCN and most-popular (GRCN passes most-popular, stays 0.002 below LightGCN).

Keep scores (``keep_scores``): the refined weights of the two directions [2, E], each times its
destination's degree, so a weight reads relative to the uniform 1/deg (1 = average, < 1 = the
content says the edge is off-profile); higher = keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..graph import BipartiteGraph
from ..models.registry import register_model
from ..ops import cosine_attention, directed_spmm

WEIGHT_MODES = ("confid", "mean", "max")
PRUNING = ("hard", "soft")
FUSIONS = ("concat", "mean", "id")
ROUTING_MODES = ("paper", "official")
CONFIDENCE_INITS = ("xavier", "ones")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"GRCN: {name} = {value!r}; choose one of {', '.join(choices)}")


class GRCN(nn.Module):
    """GRCN over ``features`` ({name: float tensor/array [num_items, width]}); module docstring.

    Args:
        dim: ID embedding size. content_dim: C, the modality representation size.
        layers: ID-branch propagations (official: 2). routing: routing iterations (official: 3).
        routing_mode, weight_mode, pruning, fusion: see the module docstring.
        normalize: L2-normalise the ID embeddings, preferences and content (the official
        default; off by default here, see the module docstring).
        temperature: softmax temperature of the affinities (GRCN: 1).
        decay: L2 coefficient of the loss. confidence_init: ``ones`` (default) or ``xavier``
        (official), the initial confidences of ``confid``. edge_dropout: share of the training
        edges dropped on each step (the official ``--dropout``). backend: force an ops backend.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        features: dict,
        dim: int = 64,
        content_dim: int = 64,
        layers: int = 2,
        routing: int = 3,
        routing_mode: str = "paper",
        weight_mode: str = "confid",
        pruning: str = "hard",
        fusion: str = "concat",
        normalize: bool = False,
        temperature: float = 1.0,
        decay: float = 1e-3,
        confidence_init: str = "ones",
        edge_dropout: float = 0.3,
        backend: str | None = None,
    ):
        super().__init__()
        if not features:
            raise ValueError(
                "GRCN needs item content features (--features NAME=path.npy, or "
                "*_feat.npy files beside train.txt); this data set has none"
            )
        for name, choices in (
            ("routing_mode", ROUTING_MODES),
            ("weight_mode", WEIGHT_MODES),
            ("pruning", PRUNING),
            ("fusion", FUSIONS),
            ("confidence_init", CONFIDENCE_INITS),
        ):
            _check_choice(name, locals()[name], choices)
        if fusion == "mean" and content_dim != dim:
            raise ValueError(
                f"GRCN: fusion 'mean' adds the ID and content representations, so "
                f"content_dim ({content_dim}) must equal dim ({dim})"
            )
        if not 0 <= edge_dropout < 1:
            raise ValueError(f"GRCN: edge_dropout = {edge_dropout}; need 0 <= edge_dropout < 1")
        if min(dim, content_dim) < 1 or layers < 0 or routing < 0:
            raise ValueError(
                f"GRCN: need dim, content_dim >= 1 and layers, routing >= 0, got "
                f"{dim}, {content_dim}, {layers}, {routing}"
            )
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.num_layers, self.routing = int(layers), int(routing)
        self.routing_mode, self.weight_mode, self.pruning, self.fusion = (
            routing_mode,
            weight_mode,
            pruning,
            fusion,
        )
        self.normalize, self.temperature, self.decay = bool(normalize), float(temperature), decay
        self.edge_dropout, self.backend = float(edge_dropout), backend
        self.modalities = list(features)
        for name, x in features.items():
            x = torch.as_tensor(x, dtype=torch.float32)
            if x.dim() != 2 or x.shape[0] != num_items:
                raise ValueError(
                    f"GRCN: modality {name!r} has shape {tuple(x.shape)}; expected "
                    f"[num_items = {num_items}, width]"
                )
            # Not persistent: the data set supplies the features, checkpoints hold the weights.
            self.register_buffer(f"content_{name}", x.contiguous(), persistent=False)
        self.user_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(num_users, dim)))
        self.item_emb = nn.Parameter(nn.init.xavier_normal_(torch.empty(num_items, dim)))
        self.project = nn.ModuleDict(
            {n: nn.Linear(int(f.shape[1]), content_dim) for n, f in features.items()}
        )
        self.preference = nn.ParameterDict(
            {
                n: nn.Parameter(nn.init.xavier_normal_(torch.empty(num_users, content_dim)))
                for n in features
            }
        )
        self.confidence = None
        if weight_mode == "confid":
            conf = torch.empty(num_users + num_items, len(features))
            # The official code draws c from Xavier-normal, N(0, 2 / (U + I + M)): a fan-in/out
            # rule applied to a lookup table, so the scale shrinks with the node count (0.011 on
            # our TikTok, 0.004 on the official one) and the sign is random. Every refined weight
            # then starts at ~1% of its affinity, a quarter of them (both modalities' c < 0)
            # negative, so the ID branch's propagation is switched off until Adam grows c (at
            # the official lr 1e-4, hundreds of epochs), and after 4 epochs most user
            # confidences are still negative: on TikTok (batch 2048, lr 5e-3) valid Recall@20
            # after 4 epochs is 0.028 with it, 0.054 with c = 1 (= weight_mode "max", 0.055),
            # and GRCN stayed below most-popular after 40 epochs. The paper gives c no init; we
            # start it at 1, i.e. from the max of the affinities, and let training lower it.
            if confidence_init == "xavier":
                nn.init.xavier_normal_(conf)
            else:
                nn.init.ones_(conf)
            self.confidence = nn.Parameter(conf)

    # ------------------------------------------------------------------ the refining layer
    def _unit(self, x):
        return F.normalize(x, dim=1) if self.normalize else x

    def _modality(self, graph, name):
        """(user rep [U, C], item rep [I, C], alpha_to_user [E], alpha_to_item [E])."""
        content = getattr(self, f"content_{name}")
        f = self._unit(F.leaky_relu(self.project[name](content)))
        p = self._unit(self.preference[name])
        if self.routing_mode == "paper":
            for _ in range(self.routing):
                y_u, _, _, _ = cosine_attention(
                    graph, p, f, None, f, self.temperature, backend=self.backend
                )
                p = F.normalize(p + y_u, dim=1)
        y_u, y_i, a_u, a_i = cosine_attention(
            graph, p, f, p, f, self.temperature, backend=self.backend
        )
        return p + y_u, f + y_i, a_u, a_i

    def refine(self, graph):
        """(content reps [(user [U, C], item [I, C]) per modality], w_to_user [E], w_to_item [E])."""
        reps, to_user, to_item = [], [], []
        for name in self.modalities:
            u, i, a_u, a_i = self._modality(graph, name)
            reps.append((u, i))
            to_user.append(a_u)
            to_item.append(a_i)
        a_u, a_i = torch.stack(to_user), torch.stack(to_item)  # [M, E]
        if self.weight_mode == "mean":
            w_u, w_i = a_u.mean(0), a_i.mean(0)
        elif self.weight_mode == "max":
            w_u, w_i = a_u.max(0).values, a_i.max(0).values
        else:  # confid: the confidence of each message's source node
            users, items = graph.edges()
            w_u = (a_u * self.confidence[self.num_users + items].T).max(0).values
            w_i = (a_i * self.confidence[users].T).max(0).values
        if self.pruning == "hard":
            w_u, w_i = F.relu(w_u), F.relu(w_i)
        return reps, w_u, w_i

    # ------------------------------------------------------------------ the ranking-model API
    def add_plugin(self, plugin):
        raise ValueError(
            "GRCN takes no plug-ins: it refines its own graph (its propagation is "
            "not masked_spmm, so the plug-in seams do not apply)"
        )

    def _check_graph(self, graph):
        if graph.num_users != self.num_users or graph.num_items != self.num_items:
            raise ValueError(
                f"graph has {graph.num_users} users x {graph.num_items} items but the "
                f"model was built for {self.num_users} x {self.num_items}"
            )

    def layer_outputs(self, graph, batch=None):
        """[(X_u, X_i), (H1_u, H1_i), ..., then one (user, item) content rep per modality]."""
        self._check_graph(graph)
        reps, w_u, w_i = self.refine(graph)
        outs = [(self._unit(self.user_emb), self._unit(self.item_emb))]
        for _ in range(self.num_layers):
            outs.append(directed_spmm(graph, *outs[-1], w_u, w_i, backend=self.backend))
        return outs + reps

    def readout(self, layers):
        """(user [U, D], item [I, D]) from ``layer_outputs`` (row-wise: works on gathered rows)."""
        ids = layers[: self.num_layers + 1]
        content = layers[self.num_layers + 1 :]
        id_u = torch.stack([u for u, _ in ids]).sum(0)
        id_i = torch.stack([i for _, i in ids]).sum(0)
        if self.fusion == "id":
            return id_u, id_i
        if self.fusion == "mean":
            return (
                torch.stack([id_u] + [u for u, _ in content]).mean(0),
                torch.stack([id_i] + [i for _, i in content]).mean(0),
            )
        return (
            torch.cat([id_u] + [u for u, _ in content], 1),
            torch.cat([id_i] + [i for _, i in content], 1),
        )

    def forward(self, graph):
        return self.readout(self.layer_outputs(graph))

    def _dropped(self, graph):
        """The training graph less a random ``edge_dropout`` share of its edges (drawn anew each
        step from torch's generator), as the official code's ``--dropout`` does before refining."""
        users, items = graph.edges()
        keep = torch.rand(graph.num_edges, device=users.device) >= self.edge_dropout
        return BipartiteGraph(
            users[keep].cpu().numpy(), items[keep].cpu().numpy(), graph.num_users, graph.num_items
        ).to(graph.device)

    def loss(self, graph, batch) -> dict:
        """{"loss", "bpr", "reg"} for a batch (users, pos, neg) of BPR triples; with
        ``edge_dropout`` the whole step runs on a thinned copy of ``graph``."""
        users, pos, neg = batch
        if self.training and self.edge_dropout > 0:
            graph = self._dropped(graph)
        layers = self.layer_outputs(graph, batch)
        items = torch.cat([pos, neg])
        u, it = self.readout([(x_u[users], x_i[items]) for x_u, x_i in layers])
        p, n = it[: pos.shape[0]], it[pos.shape[0] :]
        bpr = F.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean()
        sq = self.user_emb[users].pow(2).sum() + self.item_emb[items].pow(2).sum()
        sq = sq + sum(self.preference[m][users].pow(2).sum() for m in self.modalities)
        reg = self.decay * sq / (2 * users.shape[0])
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    @torch.no_grad()
    def keep_scores(self, graph) -> torch.Tensor:
        """[2, E] (edge-id order): the refined weights of the messages item -> user and user ->
        item, each times its destination's degree (1 = the uniform weight); higher = keep."""
        self._check_graph(graph)
        _, w_u, w_i = self.refine(graph)
        users, items = graph.edges()
        return torch.stack(
            [w_u * graph.deg_u[users].to(w_u.dtype), w_i * graph.deg_i[items].to(w_i.dtype)]
        )


@dataclass
class GRCNConfig:
    dim: int = option(64, "ID embedding size", min=1)
    layers: int = option(
        2, "propagations of the ID embeddings on the refined graph (official: 2)", min=0
    )
    decay: float = option(
        1e-3,
        "L2 coefficient on the batch's ID embeddings and user preferences, summed per row "
        "(chosen on TikTok validation; 0.03-0.06 in the official mean-over-entries units)",
        min=0,
    )
    grcn_content_dim: int = option(
        64, "size of each modality's user preference and item content representation", min=1
    )
    grcn_routing: int = option(
        3,
        "routing iterations moving each user preference towards the "
        "content of the user's items (official: 3)",
        min=0,
    )
    grcn_routing_mode: str = option(
        "paper",
        "paper: routing updates the preferences; official: "
        "the official code's loop, which leaves them as they "
        "are",
        choices=ROUTING_MODES,
    )
    grcn_weight_mode: str = option(
        "confid",
        "edge weight from the modalities' affinities: confid "
        "(max of affinity x learned source confidence), mean "
        "or max",
        choices=WEIGHT_MODES,
    )
    grcn_pruning: str = option(
        "hard", "hard: negative edge weights become 0; soft: kept", choices=PRUNING
    )
    grcn_fusion: str = option(
        "concat",
        "prediction from the ID and content representations: concat, mean or id (ID only)",
        choices=FUSIONS,
    )
    grcn_normalize: bool = option(
        False,
        "L2-normalise the ID embeddings, preferences and content (the official default; "
        "off here: it ranked lower on TikTok)",
    )
    grcn_temperature: float = option(
        1.0, "softmax temperature of the cosine affinities", min=0, min_open=True
    )
    grcn_confidence_init: str = option(
        "ones",
        "initial confidences (confid): ones (the refined "
        "graph starts as max) or xavier (official, "
        "|c| ~ 0.01: the graph starts switched off)",
        choices=CONFIDENCE_INITS,
    )

    grcn_edge_dropout: float = option(
        0.3,
        "share of the training edges dropped at random on each step before the graph is "
        "refined (the official --dropout; its README runs 0, which overfits TikTok)",
        min=0,
        max=1,
        max_open=True,
    )

    def check_rules(self):
        if self.grcn_fusion == "mean" and self.grcn_content_dim != self.dim:
            raise ValueError(
                f"model grcn: grcn_fusion = 'mean' adds the ID and content "
                f"representations, so grcn_content_dim ({self.grcn_content_dim}) "
                f"must equal dim ({self.dim})"
            )


@register_model(
    "grcn",
    config=GRCNConfig,
    summary="GRCN (Wei et al., ACM MM'20): the graph refined from item content "
    "(needs --features or *_feat.npy beside train.txt)",
)
def build_grcn(cfg: GRCNConfig, ctx) -> GRCN:
    return GRCN(
        ctx.num_users,
        ctx.num_items,
        ctx.data.features or {},
        dim=cfg.dim,
        content_dim=cfg.grcn_content_dim,
        layers=cfg.layers,
        routing=cfg.grcn_routing,
        routing_mode=cfg.grcn_routing_mode,
        weight_mode=cfg.grcn_weight_mode,
        pruning=cfg.grcn_pruning,
        fusion=cfg.grcn_fusion,
        normalize=cfg.grcn_normalize,
        temperature=cfg.grcn_temperature,
        decay=cfg.decay,
        confidence_init=cfg.grcn_confidence_init,
        edge_dropout=cfg.grcn_edge_dropout,
    )


__all__ = [
    "GRCN",
    "GRCNConfig",
    "WEIGHT_MODES",
    "PRUNING",
    "FUSIONS",
    "ROUTING_MODES",
    "CONFIDENCE_INITS",
]
