"""Result videos: H.264 whatever size the drawn frames come in."""
import numpy as np


def test_frames_of_other_sizes_fit_the_first_ones_even_sides(tmp_path):
    import cv2

    from visiontl.video import VideoWriter

    writer = VideoWriter(tmp_path / "v.mp4", 10)
    for h, w in [(49, 65), (51, 67), (48, 64), (30, 30)]:  # odd, one larger, one smaller, far smaller
        writer.write(np.zeros((h, w, 3), np.uint8))
    writer.close()
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (66, 50)
    cap.release()
