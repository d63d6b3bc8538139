"""Every loss of contrastkit: pure functions over embeddings, each with a thin nn.Module.

Contrastive losses L2-normalise their inputs, compute in at least float32 whatever the autocast
state, and, with `gather=True` under an initialised process group, draw negatives (or batch
statistics) from all ranks with gradients that flow back to the rank that produced them.
"""

from .barlow_twins import BarlowTwinsLoss, barlow_twins, barlow_twins_terms
from .byol import BYOLLoss, byol
from .decoupled import DCLLoss, DCLSymmetricLoss, DCLWLoss, dcl, dcl_symmetric, dclw
from .dino import DINOLoss, dino, dino_center, teacher_temperature
from .geometry import AlignmentLoss, UniformityLoss, alignment, uniformity
from .hyperspherical import DHELLoss, KCLLoss, dhel, kcl
from .infonce import InfoNCELoss, NTXentLoss, info_nce, nt_xent
from .lejepa import LeJEPALoss, draw_directions, lejepa, lejepa_terms, sigreg
from .moco import MoCoLoss, MoCoV3Loss, moco, moco_v3
from .multicrop import NTXentMulticropLoss, nt_xent_multicrop
from .nnclr import NNCLRLoss, nearest_neighbour_index, nnclr
from .sigmoid import SigmoidLoss, cosine_gamma, sigmoid, sigmoid_terms
from .simsiam import SimSiamLoss, simsiam
from .sinkhorn import sinkhorn
from .supcon import SupConLoss, supcon
from .swav import SwAVLoss, swav
from .vicreg import VICRegLoss, vicreg, vicreg_terms

#: Every loss function by name, for methods and the command line to choose from.
LOSS_FUNCTIONS = {
    fn.__name__: fn
    for fn in (
        info_nce,
        nt_xent,
        nt_xent_multicrop,
        dcl,
        dcl_symmetric,
        dclw,
        dhel,
        kcl,
        vicreg,
        barlow_twins,
        simsiam,
        supcon,
        sigmoid,
        alignment,
        uniformity,
        # DINO and SwAV: lists of views
        dino,
        swav,
        byol,
        moco,
        moco_v3,
        nnclr,
        sigreg,
        lejepa,
    )
}

#: The nn.Module form of each loss used for training, by the same names.
LOSS_MODULES = {
    "info_nce": InfoNCELoss,
    "nt_xent": NTXentLoss,
    "nt_xent_multicrop": NTXentMulticropLoss,
    "dcl": DCLLoss,
    "dcl_symmetric": DCLSymmetricLoss,
    "dclw": DCLWLoss,
    "dhel": DHELLoss,
    "kcl": KCLLoss,
    "vicreg": VICRegLoss,
    "barlow_twins": BarlowTwinsLoss,
    "simsiam": SimSiamLoss,
    "supcon": SupConLoss,
    "sigmoid": SigmoidLoss,
    # DINO and SwAV: lists of views
    "dino": DINOLoss,
    "swav": SwAVLoss,
    "byol": BYOLLoss,
    "moco": MoCoLoss,
    "moco_v3": MoCoV3Loss,
    "nnclr": NNCLRLoss,
    "lejepa": LeJEPALoss,
}

__all__ = [
    "LOSS_FUNCTIONS",
    "LOSS_MODULES",
    "AlignmentLoss",
    "BYOLLoss",
    "BarlowTwinsLoss",
    "DCLLoss",
    "DCLSymmetricLoss",
    "DCLWLoss",
    "DHELLoss",
    "DINOLoss",
    "InfoNCELoss",
    "KCLLoss",
    "LeJEPALoss",
    "MoCoLoss",
    "MoCoV3Loss",
    "NNCLRLoss",
    "NTXentLoss",
    "NTXentMulticropLoss",
    "SigmoidLoss",
    "SimSiamLoss",
    "SupConLoss",
    "SwAVLoss",
    "UniformityLoss",
    "VICRegLoss",
    "alignment",
    "barlow_twins",
    "barlow_twins_terms",
    "byol",
    "cosine_gamma",
    "dcl",
    "dcl_symmetric",
    "dclw",
    "dhel",
    "dino",
    "dino_center",
    "draw_directions",
    "info_nce",
    "kcl",
    "lejepa",
    "lejepa_terms",
    "moco",
    "moco_v3",
    "nearest_neighbour_index",
    "nnclr",
    "nt_xent",
    "nt_xent_multicrop",
    "sigmoid",
    "sigmoid_terms",
    "sigreg",
    "simsiam",
    "sinkhorn",
    "supcon",
    "swav",
    "teacher_temperature",
    "uniformity",
    "vicreg",
    "vicreg_terms",
]
