# The settings of the classic single-style recipe (tools/train_default.sh gives the reasons),
# sourced by tools/train_default.sh and tools/reproduce.sh. Each can be overridden from the
# environment.
GEN_SIZE=${GEN_SIZE:-1536}   # synthetic projections, SNR measured at this resolution (as the study's)
SNR=${SNR:-0.1}
EPOCHS=${EPOCHS:-80}
LR_STEPS=${LR_STEPS:-60}
LR=${LR:-2e-4}
WIDTH_DIV=${WIDTH_DIV:-8}
BLOCKS=${BLOCKS:-2,2,2,2}
ROI_BATCH=${ROI_BATCH:-128}
THREADS=${THREADS:-$(nproc)}
