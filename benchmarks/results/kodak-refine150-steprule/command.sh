# 2026-12-07, shipped mbt2018-mean weights, refine step rule of refine.step_sizes (commit 89984f4); 45 min 19 s wall on the 2 cores beside two niced training jobs (user 4,476 s)
# The 2 failed outcomes are MANIFEST.md and SHA256SUMS in the Kodak folder (not images: errors output).
nicbeam evaluate ../shared/data/kodak out/kodak-refine150 \
  --codec mbt2018-mean:quality=1,2,3,4,5,6,7,8,9,10:refine=150 \
  --codec jpeg:quality=5,10,20,30,50,75,90 --codec webp:quality=5,20,40,60,80,90 --codec avif:quality=10,30,50,70,85 \
  --codec jpegxl:distance=15,8,4,2,1 --compare_to webp --compare_to avif --compare_to jpegxl --compare_to jpeg \
  --torch_threads 1 --direct_running_mode=multi_processing --direct_num_workers=2
