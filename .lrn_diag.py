import torch
from paper_alexnet import lrn
for dev, backend in [("cpu", "aot_eager"), ("cuda", "inductor")]:
  for dtype in (torch.float32, torch.bfloat16):
   for cl in (False, True):
    torch._dynamo.reset()
    f = torch.compile(lambda t: lrn.local_response_norm(t, "paper", "fast") * 2, backend=backend, fullgraph=True)
    x = (torch.rand(2, 6, 4, 4) * 50).to(dev, dtype)
    if cl: x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = f(x); y.sum().backward()
    xr = x.detach().double().requires_grad_(); (lrn.lrn_reference(xr) * 2).sum().backward()
    print("compiled", dev, backend, dtype, cl, "fwd", (y.double() - lrn.lrn_reference(xr.detach()) * 2).abs().max().item(),
          "grad", (x.grad.double() - xr.grad).abs().max().item(), flush=True)
