"""`SynthConfig`: the parameter ranges of the synthetic CT generator, with the reason for each."""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """Ranges the generator samples from (uniformly unless said otherwise). Lengths in mm, HU, degrees.

    Defaults aim at "wider than real but still CT-like" (domain randomization): a model trained on
    them should see every real scanner, patient and field of view as one more sample.
    """

    # ---- field of view and grid ----
    fov_modes: tuple[str, ...] = ("cervical", "thoracic", "lumbar", "thoracolumbar", "long", "random")
    """Which part of the spine the scan covers; "random" = any run of 2-10 levels (partial spines)."""
    fov_weights: tuple[float, ...] = (0.15, 0.2, 0.25, 0.15, 0.1, 0.15)
    """Lumbar and thoracic scans are the most frequent spine CTs; whole spines (trauma) are rarer."""
    max_length_mm: float = 420.0
    """Cranio-caudal extent cap: keeps one volume to a few seconds on a CPU (long spines are cut)."""
    inplane_fov_mm: Range = (150.0, 380.0)
    """Reconstruction FOV: spine-targeted (150 mm) to whole-body (380 mm) reconstructions."""
    inplane_spacing_mm: Range = (0.3, 1.5)
    """0.3 mm = high-resolution cervical/bone kernels; 1.5 mm = coarse trauma/PET-CT."""
    slice_spacing_mm: Range = (0.5, 5.0)
    """0.5 mm thin-slice to 5 mm thick routine abdominal series."""
    max_inplane_voxels: int = 512
    """Scanner matrices stop at 512 (a small spacing shrinks the FOV instead)."""
    working_spacing_mm: float = 1.0
    """Anatomy and tissue are painted at this isotropic resolution, then resampled to the scan grid."""
    p_standard_orientation: float = 0.5
    """Share of axial LPS grids (DICOM default); the rest get a random signed axis permutation."""
    p_posterior_cut: float = 0.1
    """Small fields of view aimed in front of the spine or beside it, which cut the column from behind or
    from the side (the real aorta CT angiogram here shows the column only at its posterior edge)."""
    p_oblique: float = 0.15
    """Share of grids additionally rotated by up to `max_oblique_deg` (tilted/oblique reformats)."""
    max_oblique_deg: float = 12.0

    # ---- anatomy ----
    global_scale: Range = (0.85, 1.15)
    """Adult body-size spread of vertebral dimensions (about ±15 % across sexes and statures)."""
    level_scale: Range = (0.95, 1.05)
    """Level-to-level irregularity on top of the global scale."""
    axis_scale: Range = (0.94, 1.06)
    """Anisotropic per-axis jitter (flat/tall bodies) so shapes are not copies of the library."""
    elastic_mm: Range = (0.0, 2.0)
    """Peak smooth displacement per vertebra: changes shape detail without breaking topology."""
    cervical_lordosis_deg: Range = (0.0, 50.0)
    """C2–C7 lordosis, from straight necks to strong lordosis (the real columns here: 28–38° between the
    C3–C4 and C6–C7 steps; docs/synthetic_layouts.md)."""
    thoracic_kyphosis_deg: Range = (20.0, 70.0)
    """T1–T12 kyphosis of the generator's curve. Normal T4–T12 kyphosis is 20–50°; the real columns here
    measure 19–45° (interquartile) between the T4–T5 and T11–T12 steps, which (15, 60) left at 11–24°."""
    lumbar_lordosis_deg: Range = (30.0, 80.0)
    """L1–S1 lordosis of the generator's curve: flat back to hyperlordosis. The real columns measure 19–44°
    (interquartile) between the L1–L2 and L4–L5 steps, which (20, 70) left at 14–29°."""
    p_scoliosis: float = 0.25
    scoliosis_cobb_deg: Range = (10.0, 50.0)
    """Cobb angle of a scoliotic curve; 10° is the diagnostic threshold, 50° the brief's upper end."""
    p_listhesis: float = 0.1
    listhesis_mm: Range = (2.0, 8.0)
    """Grade I spondylolisthesis (up to 25 % of a ~35 mm lumbar body)."""
    disc_scale: Range = (0.55, 1.25)
    """Whole-spine disc height factor (degenerated to young) on base heights per level (`layout.disc_base_mm`:
    cervical 4-4.5, T1 3.5 → T12 6, lumbar 8-10 mm; L3-L4 of the VerSe scans here: ~4.5 mm)."""
    p_disc_collapse: float = 0.1
    """Chance that one disc is collapsed to 20–40 % (severe degeneration)."""
    p_t13: float = 0.03
    """Thirteen thoracic vertebrae: a few % in population studies."""
    p_l6: float = 0.04
    """Lumbarized S1 / six lumbar vertebrae: about 4 %."""
    p_four_lumbar: float = 0.02
    """Four lumbar vertebrae (sacralized L5 counted as S1): about 2 %."""
    p_11_ribs: float = 0.05
    """Twelfth ribs absent (11 pairs)."""
    p_lumbar_rib: float = 0.03
    """Rudimentary rib on L1 (13 pairs without T13)."""
    p_fused: float = 0.03
    """Block vertebra / surgical fusion: no disc, bone bridge, labels split at the mid-plane."""
    fat_mm: Range = (5.0, 45.0)
    """Subcutaneous fat thickness: lean to obese."""
    p_table: float = 0.85
    """Most scans show the patient table; some are cropped above it."""

    # ---- appearance (HU) ----
    hu_cortical: Range = (700.0, 2000.0)
    """A 1 mm voxel on the cortical shell before the scanner's blur (compact bone is ~1800 HU; a 0.5-1 mm
    shell fills part of the voxel). Matched on real CT: bone voxels' 99th percentile is 1100-1250 HU in the
    1-1.5 mm scans here (the blur to the scan's resolution brings the painted shell down to that)."""
    hu_cancellous: Range = (40.0, 350.0)
    """Trabecular bone: severe osteoporosis (the real L3 cutout in tests/data: 51 HU median) to young
    adult (~350 HU). Opportunistic-screening thresholds: < 100 HU osteoporotic, > 160 HU normal."""
    wall_fraction: Range = (0.2, 0.6)
    """HU of a body's side wall voxel as a fraction of the way from cancellous to cortical: the wall is
    thinner (0.3-0.5 mm) than a voxel, the endplates and the arch's shell are not (real L3 at 1.5 mm:
    body 51, body border 229, arch 409, articular processes 560 HU)."""
    posterior_fraction: Range = (0.15, 0.5)
    """Inside of the arch and processes, same scale: thin plates of mostly compact bone."""
    p_sclerotic: float = 0.04
    hu_sclerotic: Range = (400.0, 900.0)
    """Diffusely sclerotic spines (osteopetrosis, diffuse blastic disease, renal osteodystrophy)."""
    trabecular_texture: Range = (0.06, 0.22)
    """SD of the marrow texture as a fraction of its HU (plus 8 HU): fine-grained to coarse trabeculae."""
    hu_disc: Range = (50.0, 120.0)
    hu_csf: Range = (0.0, 20.0)
    hu_cord: Range = (25.0, 45.0)
    hu_muscle: Range = (15.0, 70.0)
    """Fatty (myosteatosis, elderly: the real abdomen example's back muscles are ~20 HU at 3 mm) to lean."""
    hu_organ: Range = (25.0, 70.0)
    """Unenhanced to portal-venous liver/bowel wall."""
    hu_fat: Range = (-120.0, -80.0)
    hu_lung: Range = (-900.0, -750.0)
    hu_air: Range = (-1024.0, -980.0)
    hu_table: Range = (-300.0, 200.0)
    """Carbon-fibre tables with foam pads range from near-air to soft tissue."""
    hu_metal: Range = (2500.0, 3071.0)
    """Titanium/steel saturates at the 12-bit ceiling of most scanners."""
    p_metal: float = 0.1
    """Pedicle screws with rods (post-operative spines)."""
    p_contrast: float = 0.3
    """Contrast-enhanced scans (CT angiograms, staging CT): aorta, vena cava and heart chambers bright."""
    hu_contrast: Range = (150.0, 700.0)
    """Blood with contrast (the real CT angiogram here: 450-600 HU in the heart and aorta, brighter than
    its vertebral bodies); organs enhance by up to 80 HU."""
    noise_sd: Range = (3.0, 40.0)
    """White noise: smooth kernels/high dose (3 HU) to thin-slice low dose (40 HU)."""
    corr_noise_sd: Range = (0.0, 25.0)
    """Low-frequency (in-plane correlated) noise texture."""
    bias_hu: Range = (0.0, 30.0)
    """Smooth HU drift (beam hardening, cupping)."""
    p_clip_low: float = 0.05
    """Exports that zeroed everything below a threshold (e.g. background suppressed)."""
    clip_low_hu: Range = (-1000.0, -200.0)
    p_bone_window: float = 0.06
    bone_window_hu: Range = (100.0, 250.0)
    """Bone-window exports: everything below a threshold set to one value (0, -1024 or the threshold)."""
    p_display_window: float = 0.06
    display_width_hu: Range = (350.0, 2500.0)
    display_level_hu: Range = (30.0, 500.0)
    """Display windows baked into 8- or 12-bit values and rescaled back to HU: a soft-tissue window
    (W 400 / L 40) leaves bone saturated at 240 HU, a bone window (W 2000 / L 500) air at -500."""
    p_fov_circle: float = 0.3
    """Padding value outside the reconstruction circle (−1024, −2048 or −3024 depending on vendor)."""

    # ---- lesions ----
    p_lesions: float = 0.3
    """Share of spines with at least one lesion (metastases, fractures)."""
    lesions_per_spine: tuple[int, int] = (1, 4)
    lesion_radius_mm: Range = (3.0, 11.0)
    """From barely detectable to near whole-body metastases."""
    hu_lytic: Range = (-20.0, 60.0)
    """Lytic lesions replace bone by soft tissue."""
    hu_blastic: Range = (450.0, 1200.0)
    fracture_height_loss: Range = (0.2, 0.75)
    """Genant grades 1–3 (20–25 %, 25–40 %, >40 %) up to vertebra plana."""
    lesion_type_weights: tuple[float, float, float, float] = (0.35, 0.25, 0.15, 0.25)
    """lytic, blastic, mixed, compression fracture."""

    def __post_init__(self) -> None:
        if len(self.fov_modes) != len(self.fov_weights):
            raise ValueError("fov_modes and fov_weights must have the same length")
        for name in ("inplane_spacing_mm", "slice_spacing_mm", "inplane_fov_mm", "global_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be an increasing range of positive values, got {(lo, hi)}")
        if self.working_spacing_mm <= 0 or self.max_length_mm <= 0:
            raise ValueError("working_spacing_mm and max_length_mm must be positive")


def small_config(**overrides) -> SynthConfig:
    """A fast configuration for tests: short lumbar-ish fields of view, coarse grids."""
    base = dict(
        max_length_mm=130.0, inplane_fov_mm=(120.0, 160.0), inplane_spacing_mm=(1.2, 1.5),
        slice_spacing_mm=(1.5, 3.0), working_spacing_mm=1.5,
    )
    base.update(overrides)
    return SynthConfig(**base)
