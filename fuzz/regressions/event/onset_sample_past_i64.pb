
eeg.event/1s-42	stim-0017:target(ÿÿÿÿÿÿÿÿÿ