"""LightGNN (Chen, Xia & Huang, WSDM'25): a pruned student distilled from LightGCN through an
intermediate model on the high-order closure graph.

One model class serves the three stages. ``PrunableLightGCN`` is the official ``LightGCN_sp``:
free user/item tables (Xavier uniform), a fixed normalised graph over the U + I nodes with one
learnable weight and one binary mask per stored entry, a binary mask per embedding entry, and

    E_0 = [E_user; E_item] * M_emb,   E_l = (A_hat * W * M) E_{l-1},   out = E_0 + ... + E_L.

- teacher:      A_hat = D~^-1/2 (A + I) D~^-1/2 (``NodeGraph.build(graph, 1)``), 8 layers, no
                weights or masks (LightGCN as the LightGNN code trains it: self-loops inside the
                normalisation, sum readout);
- intermediate: A_hat = the normalised (h+1)-hop closure I + A + ... + A^(h+1) (order h + 1,
                path counts as values, user-user and item-item entries), learnable W;
- student:      A + I again, learnable W, masks M and M_emb pruned between runs.

Decisions where the paper and the official code differ (the code produced the published
numbers; ``../shared/research/official_code.md`` section 1 has the details):

- Weights and masks live on every *directed* entry, self-loops included (code). The paper's
  Eq. 4 ties the two directions and adds an unweighted residual; in the code the residual is the
  self-loop entry of A_hat, weighted and prunable. "Edges kept" counts these entries.
- No renormalisation after weighting or pruning (code and paper agree): A_hat is normalised once.
- Importance (Eq. 8): w + beta1 sigma(e_r . e_c) + beta2 w~, with beta1 on the prediction and
  beta2 on the intermediate weight as in the code (the paper's Eq. 8 names them the other way);
  e and w~ are the intermediate model's final embeddings and learned weights W (Eq. 8's W^t).
- The embedding-level KD teacher side is the sum of the teacher's layers from
  ``ekd_from_layer`` on (code: 2; the paper's Eq. 6 uses the final embedding: 0).
- Uniformity: log sum_j exp(e_a . e_j / tau) over all nodes for the four pairs of the code
  (batch users vs all items / users, batch items vs all users / items), computed stably (the
  code's exp without max subtraction, and its + 1e-5 guard, are not kept).
- Subspace constraint: Eq. 9 as written, -log(sum_{S_a} exp / sum_all exp) on user-user and
  item-item pairs with S_a from Eq. 10 (the code's soft-target cross-entropy over four blocks is
  not followed); it is the fused log-sum-exp with the mask positive sets.
- Model selection and the pruning state use validation (the code uses test).

Modules: ``model`` (the node graph, ``PrunableLightGCN``), ``distill`` (the losses), ``prune``
(Eq. 8), ``stages`` (the three registered models and their configs).
"""

from .distill import LossWeights, TeacherView, info_nce, lightgnn_loss, prediction_kd
from .model import NodeGraph, PrunableLightGCN
from .prune import Importance, edge_importance, prune
from .stages import (
    DistillConfig,
    LightGNNIntermediateConfig,
    LightGNNStudentConfig,
    LightGNNTeacherConfig,
    load_stage,
    node_graph,
)

__all__ = [
    "DistillConfig",
    "Importance",
    "LightGNNIntermediateConfig",
    "LightGNNStudentConfig",
    "LightGNNTeacherConfig",
    "LossWeights",
    "NodeGraph",
    "PrunableLightGCN",
    "TeacherView",
    "edge_importance",
    "info_nce",
    "lightgnn_loss",
    "load_stage",
    "node_graph",
    "prediction_kd",
    "prune",
]
