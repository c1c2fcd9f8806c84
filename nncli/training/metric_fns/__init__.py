"""Evaluation metrics in plain numpy, one idea per file; each is checked against scikit-learn in the tests.

    accuracy.py     accuracy, top-k accuracy
    confusion.py    the confusion matrix
    prf.py          precision, recall, F1 (binary, macro, micro, weighted) from a confusion matrix
    roc_auc.py      ROC-AUC: binary (Mann–Whitney ranks, ties averaged) and one-vs-rest macro
    regression.py   MAE, MSE, RMSE, R²

Every function takes whole arrays (an evaluation split's outputs and targets) and returns Python
floats (or a nested list for the confusion matrix), so the results go straight into JSON.
"""
