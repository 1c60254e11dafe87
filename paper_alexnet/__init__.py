"""paper_alexnet: the network of Krizhevsky, Sutskever & Hinton (NIPS 2012), faithfully, and fast.

`from paper_alexnet import AlexNet`; `AlexNet()` is the paper's two-tower network (§3, Fig. 2).
Imports are lazy so that `alexnet prep` works on a machine without torch.
"""

__all__ = ["AlexNet", "ModelConfig", "RunConfig"]


def __getattr__(name):
    if name == "AlexNet":
        from paper_alexnet.model import AlexNet
        return AlexNet
    if name in ("ModelConfig", "RunConfig"):
        from paper_alexnet import config
        return getattr(config, name)
    raise AttributeError(f"module 'paper_alexnet' has no attribute {name!r}")
