"""The names users type for methods, their losses, backbones and optimisers: one list each.

Kept free of imports so that a wrong name is refused before torch loads (within a second). The
registries that hold each name's code are keyed by these lists: `methods.spec.METHODS` (and
the losses its methods train with),
`models.backbones.build_backbone` and `train.optim.build_optimizer` (a test checks they agree).
"""

METHOD_NAMES = (
    "simclr",
    "simclr_multicrop",
    "barlow_twins",
    "vicreg",
    "simsiam",
    "supcon",
    "relic",
    "supervised",
    "byol",
    "moco_v2",
    "moco_v3",
    "nnclr",
    "lejepa",
    "dino",
    "swav",
)
BACKBONE_NAMES = ("resnet18", "resnet50", "efficientnet_b0", "small-cnn")
OPTIMIZER_NAMES = ("sgd", "lars", "adam", "adamw")
LOSS_NAMES = (  # the losses the methods train with (`compare --losses` takes these)
    "nt_xent",
    "info_nce",
    "dcl",
    "dcl_symmetric",
    "dclw",
    "dhel",
    "kcl",
    "nt_xent_multicrop",
    "barlow_twins",
    "vicreg",
    "simsiam",
    "supcon",
    "sigmoid",
    "cross_entropy",
    "byol",
    "moco",
    "moco_v3",
    "nnclr",
    "lejepa",
    "dino",
    "swav",
)
