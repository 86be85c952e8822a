"""Pictures: any picture to MNIST's 28x28 (`imageio` decodes and validates, `clean` fixes
greyscale, ink polarity, light and ruled lines, `preprocess` finds, frames and centres the
digit, keeping every step; `step_effect` reads each step), and the distortions used in
training (`augment`, `warp`)."""
