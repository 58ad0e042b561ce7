/// Labels the 8-connected components of the nonzero pixels of a row-major mask.
///
/// Returns one label per pixel (0 = background, `1..=n` = component) and the number `n` of
/// components. This is `scipy.ndimage.label` with a 3×3 structuring element of ones, which the
/// official MVTec AD evaluation uses; the numbering of components may differ, their sets do not.
pub fn label_regions_8(mask: &[u8], width: usize, height: usize) -> (Vec<u32>, u32) {
    assert_eq!(
        mask.len(),
        width * height,
        "mask length must be width * height"
    );
    let mut labels = vec![0u32; mask.len()];
    let mut next = 0u32;
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.push(start);
        // Depth-first flood fill; every pixel is pushed at most once.
        while let Some(i) = stack.pop() {
            let (y, x) = (i / width, i % width);
            let y0 = y.saturating_sub(1);
            let y1 = (y + 1).min(height - 1);
            let x0 = x.saturating_sub(1);
            let x1 = (x + 1).min(width - 1);
            for ny in y0..=y1 {
                for nx in x0..=x1 {
                    let j = ny * width + nx;
                    if mask[j] != 0 && labels[j] == 0 {
                        labels[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
    }
    (labels, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_neighbours_join_one_region() {
        // 1 . .
        // . 1 .
        // . . 1   -> one 8-connected region (three 4-connected ones)
        let mask = [1, 0, 0, 0, 1, 0, 0, 0, 1];
        let (labels, n) = label_regions_8(&mask, 3, 3);
        assert_eq!(n, 1);
        assert_eq!(labels, vec![1, 0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn separated_blobs_and_a_ring() {
        // 1 1 . . 1
        // . . . . 1
        // 1 1 1 . .
        // 1 . 1 . 1
        // 1 1 1 . .
        #[rustfmt::skip]
        let mask = [
            1, 1, 0, 0, 1,
            0, 0, 0, 0, 1,
            1, 1, 1, 0, 0,
            1, 0, 1, 0, 1,
            1, 1, 1, 0, 0,
        ];
        let (labels, n) = label_regions_8(&mask, 5, 5);
        assert_eq!(n, 4);
        // The ring is one region whatever its label; its hole stays background.
        let ring = labels[10];
        for i in [10, 11, 12, 15, 17, 20, 21, 22] {
            assert_eq!(labels[i], ring);
        }
        assert_eq!(labels[16], 0);
        assert_eq!(labels[0], labels[1]);
        assert_eq!(labels[4], labels[9]);
        let mut distinct = vec![labels[0], labels[4], ring, labels[19]];
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    fn empty_and_full_masks() {
        let (labels, n) = label_regions_8(&[0; 12], 4, 3);
        assert_eq!(n, 0);
        assert!(labels.iter().all(|&l| l == 0));
        let (labels, n) = label_regions_8(&[255; 12], 4, 3);
        assert_eq!(n, 1);
        assert!(labels.iter().all(|&l| l == 1));
    }
}
