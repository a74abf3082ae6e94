"""M2IB in PyTorch: the official algorithm (REFERENCE.md §1) and the best PyTorch formulation of
the same maths, both with the project's noise protocol (DESIGN.md "M2IB"), so that the Rust
implementation can be checked against them and benchmarked.

Our own code, written from DESIGN.md / REFERENCE.md; imported by make_m2ib_goldens.py and
bench_m2ib.py.
"""
import torch
import torch.nn.functional as F

MASK64 = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def noise_seed(sample_seed, modality, step):
    """modality 0 = image, 1 = text."""
    return splitmix64(sample_seed ^ (modality << 32) ^ (step << 40)) & ((1 << 63) - 1)


def draw_noise(sample_seed, modality, step, shape):
    torch.manual_seed(noise_seed(sample_seed, modality, step))
    return torch.randn(shape)


def capacity(lam, h, sigma):
    var = (1 - lam) ** 2
    mu = lam * h / sigma
    return -0.5 * (1 + torch.log(var) - mu ** 2 - var)


def feature(out):
    return out if torch.is_tensor(out) else out.pooler_output


def hidden_index(layer):
    """HF hidden_states index of a bottleneck site: 0 for "embeddings", block l -> l + 1."""
    return 0 if layer == "embeddings" else layer + 1


def official_m2ib(model, pixel_values, input_ids, modality, layer, beta, sigma, seed, steps=10, copies=10, lr=1.0):
    """The official loop: the bottleneck spliced after block `layer` of one tower, both towers
    run on `copies` replicas every step, CLIP's parameters left with requires_grad, a new Adam
    per call, the heatmap read from the last forward. Returns (capacity summed over features
    [N], loss per step)."""
    tower = model.vision_model if modality == 0 else model.text_model
    index = hidden_index(layer)
    # "embeddings": the encoder input (vision: after pre_layrnorm; text: token + positions).
    if layer == "embeddings":
        block = tower.pre_layrnorm if modality == 0 else tower.embeddings
    else:
        block = tower.encoder.layers[layer]
    pixels = pixel_values.expand(copies, -1, -1, -1)
    ids = input_ids.expand(copies, -1)
    with torch.no_grad():
        out = tower(pixel_values=pixel_values, output_hidden_states=True) if modality == 0 else \
            tower(input_ids=input_ids, output_hidden_states=True)
        n, d = out.hidden_states[index].shape[1:]
    alpha = torch.nn.Parameter(torch.full((1, n, d), 5.0))
    state = {"step": 0, "capacity": None}

    def hook(module, inputs, output):
        x = output
        lam = torch.sigmoid(alpha).expand(x.shape[0], x.shape[1], -1)
        var = (1 - lam) ** 2
        state["capacity"] = -0.5 * (1 + torch.log(var) - (lam * x / sigma) ** 2 - var)
        eps = draw_noise(seed, modality, state["step"], (copies, n, d))
        return lam * x + sigma * (torch.sqrt(var) * eps)

    handle = block.register_forward_hook(hook)
    opt = torch.optim.Adam(lr=lr, params=[alpha])
    losses = []
    try:
        for step in range(steps):
            state["step"] = step
            opt.zero_grad()
            t = feature(model.get_text_features(input_ids=ids))
            i = feature(model.get_image_features(pixel_values=pixels))
            loss = beta * state["capacity"].mean() - torch.nn.CosineSimilarity(eps=1e-6)(t, i).mean()
            losses.append(loss.item())
            loss.backward()
            opt.step()
    finally:
        handle.remove()
    return state["capacity"].mean(0).sum(-1).detach(), losses


def text_mask(length, copies):
    m = torch.full((length, length), torch.finfo(torch.float32).min).triu(1)
    return m.view(1, 1, length, length).expand(copies, 1, length, length)


def optimized_m2ib(model, pixel_values, input_ids, modality, layer, beta, sigma, seed, steps=10, copies=10, lr=1.0):
    """The same maths written for speed: weights frozen, the prefix up to `layer` and the other
    tower's embedding computed once, only the suffix run per step, no wasted last update."""
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        if modality == 0:
            h = model.vision_model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[hidden_index(layer)]
            target = feature(model.get_text_features(input_ids=input_ids))
        else:
            h = model.text_model(input_ids=input_ids, output_hidden_states=True).hidden_states[hidden_index(layer)]
            target = feature(model.get_image_features(pixel_values=pixel_values))
    n, d = h.shape[1:]
    tower = model.vision_model if modality == 0 else model.text_model
    layers = tower.encoder.layers[hidden_index(layer):]
    mask = None if modality == 0 else text_mask(n, copies)
    pool = int(input_ids[0].argmax()) if modality == 1 else 0

    def suffix(z):
        for blk in layers:
            z = blk(z, attention_mask=mask)
        if modality == 0:
            return model.visual_projection(model.vision_model.post_layernorm(z[:, 0]))
        return model.text_projection(model.text_model.final_layer_norm(z)[:, pool])

    alpha = torch.full((1, n, d), 5.0, requires_grad=True)
    opt = torch.optim.Adam(lr=lr, params=[alpha])
    losses = []
    for step in range(steps):
        lam = torch.sigmoid(alpha)
        var = (1 - lam) ** 2
        cap = -0.5 * (1 + torch.log(var) - (lam * h / sigma) ** 2 - var)
        eps = draw_noise(seed, modality, step, (copies, n, d))
        z = lam * h + sigma * (torch.sqrt(var) * eps)
        loss = beta * cap.mean() - F.cosine_similarity(suffix(z), target, dim=-1, eps=1e-6).mean()
        losses.append(loss.item())
        if step + 1 == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cap[0].sum(-1).detach(), losses


def upsample_patch_scores(scores, grid, size):
    """Drop CLS, patch grid, bilinear (align_corners=False) to the input size."""
    return F.interpolate(scores[1:].view(1, 1, grid, grid), size=(size, size), mode="bilinear", align_corners=False)[0, 0]
