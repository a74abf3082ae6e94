"""Golden baseline outputs from the Python libraries that define the methods, on the clip
goldens' ckpt_a: Captum `Saliency` and `KernelShap` and pytorch-grad-cam `GradCAM`.

Kernel SHAP is run on the same interpretable space as Rust (49 patch cells / content tokens,
removed = 0 in normalised pixels / the mask id) and with the seed Rust derives, so Captum draws
the same coalitions.

Writes crates/attribution/tests/golden/baselines.safetensors and baselines.json.
Run by hand:  $(scripts/python/setup_venv.sh) scripts/python/make_baseline_goldens.py
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from captum.attr import KernelShap, Saliency
from PIL import Image
from pytorch_grad_cam import GradCAM
from safetensors.torch import save_file
from transformers import CLIPModel, CLIPTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from m2ib_reference import feature, splitmix64  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIP_GOLDEN = os.path.join(ROOT, "crates", "clip", "tests", "golden")
OUT = os.path.join(ROOT, "crates", "attribution", "tests", "golden")
IMAGE, CAPTION, SEED = "wide_451x300.png", "a photo of a cat on a red sofa", 7
SHAP_STREAM = 0x53484150
IMAGE_SAMPLES, TEXT_SAMPLES = 200, 64


def torch_seed(x):
    return splitmix64(x) & ((1 << 63) - 1)


def main():
    d = os.path.join(CLIP_GOLDEN, "ckpt_a")
    model = CLIPModel.from_pretrained(d, attn_implementation="eager").eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tok = CLIPTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
    px = CLIPImageProcessorPil()(images=Image.open(os.path.join(CLIP_GOLDEN, "images", IMAGE)).convert("RGB"), return_tensors="pt")["pixel_values"]
    ids = tok(CAPTION, return_tensors="pt")["input_ids"]
    end = ids.shape[1] - 1
    mask_id = 49407  # the tokenizer has no pad token: Rust's text_mask_id falls back to the end id

    def text_emb(rows):
        h = model.text_model(input_ids=rows).last_hidden_state  # after final_layer_norm
        return model.text_projection(h[:, end])

    with torch.no_grad():
        t_emb = text_emb(ids)
        i_emb = feature(model.get_image_features(pixel_values=px))
    out = {}

    # Captum Saliency: |d cos / d pixels|, max over channels; text: L2 of d cos / d token embeddings.
    sal = Saliency(lambda x: F.cosine_similarity(feature(model.get_image_features(pixel_values=x)), t_emb, eps=1e-8))
    out["saliency.image"] = sal.attribute(px.clone().requires_grad_(True), abs=True)[0].amax(0).contiguous()
    tokens = model.text_model.embeddings.token_embedding(ids).detach().requires_grad_(True)
    handle = model.text_model.embeddings.token_embedding.register_forward_hook(lambda m, i, o: tokens)
    score = F.cosine_similarity(text_emb(ids), i_emb, eps=1e-8).sum()
    handle.remove()
    (g,) = torch.autograd.grad(score, tokens)
    out["saliency.text"] = g[0].norm(dim=-1).contiguous()

    # pytorch-grad-cam GradCAM on the last block's layer_norm1 (CLS dropped, 7x7, channels first).
    class ImageModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.clip = model  # registered, so grad-cam finds parameters (for the device)

        def forward(self, x):
            return feature(model.get_image_features(pixel_values=x))

    def reshape(t):
        return t[:, 1:, :].reshape(t.shape[0], 7, 7, t.shape[2]).permute(0, 3, 1, 2)

    cam = GradCAM(model=ImageModel(), target_layers=[model.vision_model.encoder.layers[-1].layer_norm1], reshape_transform=reshape)
    px_g = px.clone().requires_grad_(True)
    out["gradcam.image"] = torch.from_numpy(cam(input_tensor=px_g, targets=[lambda o: F.cosine_similarity(o, t_emb[0], dim=-1, eps=1e-8)])[0]).contiguous()

    # Captum KernelShap on the same interpretable spaces and seeds as Rust.
    def image_score(z):
        m = z.view(-1, 1, 7, 7).repeat_interleave(32, 2).repeat_interleave(32, 3)
        with torch.no_grad():
            return F.cosine_similarity(feature(model.get_image_features(pixel_values=px * m)), t_emb, eps=1e-8)

    torch.manual_seed(torch_seed(SEED ^ SHAP_STREAM))
    ks = KernelShap(image_score).attribute(torch.ones(1, 49), baselines=0.0, n_samples=IMAGE_SAMPLES, perturbations_per_eval=64)
    out["kernel_shap.image_cells"] = ks[0].contiguous()
    content = torch.arange(1, end)

    def text_score(z):
        rows = ids.repeat(z.shape[0], 1)
        rows[:, content] = torch.where(z.bool(), rows[:, content], torch.full_like(rows[:, content], mask_id))
        with torch.no_grad():
            return F.cosine_similarity(text_emb(rows), i_emb, eps=1e-8)

    torch.manual_seed(torch_seed(SEED ^ SHAP_STREAM ^ (1 << 32)))
    ks = KernelShap(text_score).attribute(torch.ones(1, len(content)), baselines=0.0, n_samples=TEXT_SAMPLES, perturbations_per_eval=64)
    out["kernel_shap.text_content"] = ks[0].contiguous()
    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.float() for k, v in out.items()}, os.path.join(OUT, "baselines.safetensors"))
    import captum
    import pytorch_grad_cam
    with open(os.path.join(OUT, "baselines.json"), "w") as f:
        json.dump({"checkpoint": "ckpt_a", "image": IMAGE, "caption": CAPTION, "seed": SEED, "text_mask_id": mask_id,
                   "image_samples": IMAGE_SAMPLES, "text_samples": TEXT_SAMPLES,
                   "versions": {"captum": captum.__version__, "grad_cam": getattr(pytorch_grad_cam, "__version__", "?"),
                                "torch": torch.__version__}}, f, indent=1)
    print({k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
