# PyTorch side of the dense-extraction benchmark (`ust bench dense`), for a side-by-side timing
# on the same machine. PyTorch is no dependency of the project: run this in a throwaway venv,
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
#   /tmp/torchvenv/bin/python crates/ust-conv/pytorch/dense_torch.py THREADS SIZE [P,P,...] [METHODS]
# e.g. `... dense_torch.py 2 256 17,33,65 multipool`; prints one JSON line per (p, method).
# Same patch networks as ust-models (METHOD.md §2), dense extraction by the multi-pool
# construction (Bailer et al.) and by dilation, and one student step (forward, MSE, backward, Adam).
import sys, time, json, resource
import torch, torch.nn as nn, torch.nn.functional as F

ARCH = {
    17: [("c", 6, 128), ("c", 5, 256), ("c", 5, 256), ("l", 4, 128)],
    33: [("c", 5, 128), ("p",), ("c", 5, 256), ("p",), ("c", 2, 256), ("l", 4, 128)],
    65: [("c", 5, 128), ("p",), ("c", 5, 128), ("p",), ("c", 5, 128), ("p",), ("c", 4, 256), ("l", 1, 128)],
}

class Net(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.spec = ARCH[p]; self.p = p
        convs = []; cin = 3
        for s in self.spec:
            if s[0] != "p":
                convs.append(nn.Conv2d(cin, s[2], s[1])); cin = s[2]
        self.convs = nn.ModuleList(convs)
        self.npool = sum(1 for s in self.spec if s[0] == "p")

    def dense_multipool(self, img):
        b, _, h, w = img.shape
        r = (self.p - 1) // 2
        extra = 2 ** self.npool
        x = F.pad(img, (r, r + extra, r, r + extra))
        ci = 0
        for s in self.spec:
            if s[0] == "p":
                hh, ww = x.shape[2], x.shape[3]
                ho, wo = (hh - 1) // 2, (ww - 1) // 2
                outs = [F.max_pool2d(x[:, :, i:i + 2 * ho, j:j + 2 * wo], 2, 2) for i in (0, 1) for j in (0, 1)]
                x = torch.cat(outs, 0)
            else:
                x = self.convs[ci](x); ci += 1
                if s[0] == "c":
                    x = F.leaky_relu(x, 5e-3)
        # unwarp: batch = (4^k * b), grids interleaved back into one map
        d = x.shape[1]
        for _ in range(self.npool):
            n4, _, hh, ww = x.shape
            x = x.view(2, 2, n4 // 4, d, hh, ww).permute(2, 3, 4, 0, 5, 1).reshape(n4 // 4, d, hh * 2, ww * 2)
        return x[:, :, :h, :w]

    def dense_dilated(self, img):
        r = (self.p - 1) // 2
        x = F.pad(img, (r, r, r, r))
        ci = 0; dil = 1
        for s in self.spec:
            if s[0] == "p":
                x = F.max_pool2d(x, 2, stride=1, dilation=dil); dil *= 2
            else:
                c = self.convs[ci]; ci += 1
                x = F.conv2d(x, c.weight, c.bias, dilation=dil)
                if s[0] == "c":
                    x = F.leaky_relu(x, 5e-3)
        return x[:, :, :img.shape[2], :img.shape[3]]

def timeit(f, repeats):
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts), sum(ts) / len(ts)

def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    repeats = 3
    res = []
    ps = [int(v) for v in sys.argv[3].split(",")] if len(sys.argv) > 3 else [17, 33, 65]
    methods = sys.argv[4].split(",") if len(sys.argv) > 4 else ["multipool", "dilated"]
    for p in ps:
        torch.manual_seed(0)
        net = Net(p)
        img = torch.rand(1, 3, size, size)
        for name, fn in (("multipool", net.dense_multipool), ("dilated", net.dense_dilated)):
            if name not in methods: continue
            with torch.no_grad():
                y = fn(img); assert y.shape[2:] == (size, size), (p, name, y.shape)
                inf = timeit(lambda: fn(img), repeats)
            target = torch.randn(1, 128, size, size)
            opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-5)
            def step():
                opt.zero_grad(set_to_none=True)
                loss = ((fn(img) - target) ** 2).sum(1).mean()
                loss.backward(); opt.step()
            tr = timeit(step, repeats)
            r = dict(p=p, size=size, method=name, threads=torch.get_num_threads(), inference_min_s=inf[0], inference_mean_s=inf[1],
                     train_min_s=tr[0], train_mean_s=tr[1], peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            print(json.dumps(r), flush=True); res.append(r)
    if len(sys.argv) > 3: return
    # check the two constructions agree
    net = Net(33); img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        print("max |multipool - dilated| p33:", (net.dense_multipool(img) - net.dense_dilated(img)).abs().max().item())

main()
