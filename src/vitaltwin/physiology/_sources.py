"""Bibliography of the physiology, referenced by key from docstrings and parameter sources."""

from __future__ import annotations

SOURCES: dict[str, str] = {
    "smith2004": (
        "Smith BW, Chase JG, Nokes RI, Shaw GM, Wake G. Minimal haemodynamic system model "
        "including ventricular interaction and valve dynamics. Med Eng Phys 26(2):131-139, 2004. "
        "doi:10.1016/j.medengphy.2003.10.001"
    ),
    "ursino1998": (
        "Ursino M. Interaction between carotid baroregulation and the pulsating heart: a "
        "mathematical model. Am J Physiol 275(5):H1733-H1747, 1998. "
        "doi:10.1152/ajpheart.1998.275.5.H1733"
    ),
    "heldt2002": (
        "Heldt T, Shim EB, Kamm RD, Mark RG. Computational modeling of cardiovascular response "
        "to orthostatic stress. J Appl Physiol 92(3):1239-1254, 2002 (Table 4: cardiopulmonary "
        "reflex gains). doi:10.1152/japplphysiol.00241.2001"
    ),
    "cvsim2010": (
        "Heldt T, Mukkamala R, Moody GB, Mark RG. CVSim: an open-source cardiovascular "
        "simulator for teaching and research. Open Pacing Electrophysiol Ther J 3:45-54, 2010 "
        "(default cardiopulmonary venous tone gain 100 mL/mmHg, resistance gain 0.05 PRU/mmHg)"
    ),
    "johnson2014": (
        "Johnson BD, van Helmond N, Curry TB, van Buskirk CM, Convertino VA, Joyner MJ. "
        "Reductions in central venous pressure by lower body negative pressure or blood loss "
        "elicit similar hemodynamic responses. J Appl Physiol 117(2):131-141, 2014 (1,000 mL "
        "blood loss in 12 conscious men in three 333 mL stages). "
        "doi:10.1152/japplphysiol.00070.2014"
    ),
    "scully2016": (
        "Scully CG, Daluwatte C, Marques NR, et al. Effect of hemorrhage rate on early "
        "hemodynamic responses in conscious sheep. Physiol Rep 4(7):e12739, 2016 (at "
        "1.25 mL/kg/min, MAP fell by 30 mmHg only after 27 +/- 3 % of blood volume was removed; "
        "heart rate rose). doi:10.14814/phy2.12739"
    ),
    "stergiopulos1996": (
        "Stergiopulos N, Meister JJ, Westerhof N. Determinants of stroke volume and systolic and "
        "diastolic aortic pressure. Am J Physiol 270(6):H2050-H2059, 1996. "
        "doi:10.1152/ajpheart.1996.270.6.H2050"
    ),
    "suga1973": (
        "Suga H, Sagawa K, Shoukas AA. Load independence of the instantaneous pressure-volume "
        "ratio of the canine left ventricle and effects of epinephrine and heart rate on the "
        "ratio. Circ Res 32(3):314-322, 1973. doi:10.1161/01.RES.32.3.314"
    ),
    "guyton": (
        "Hall JE, Hall ME. Guyton and Hall Textbook of Medical Physiology, 14th ed. Elsevier, "
        "2021: ch. 9 (cardiac cycle: EDV ~110-120 mL, SV ~70 mL, ESV ~40-50 mL, EF ~60 %, "
        "HR ~72/min), ch. 14-15 (arterial pressure 120/80 mmHg), ch. 20 (cardiac output ~5 L/min)"
    ),
    "meaney2000": (
        "Meaney E, Alva F, Moguel R, Meaney A, Alva J, Webel R. Formula and nomogram for the "
        "sphygmomanometric calculation of the mean arterial pressure. Heart 84(1):64, 2000 "
        "(time-averaged MAP = DBP + 0.412 x pulse pressure). doi:10.1136/heart.84.1.64"
    ),
    "kovacs2009": (
        "Kovacs G, Berghold A, Scheidl S, Olschewski H. Pulmonary arterial pressure during rest "
        "and exercise in healthy subjects: a systematic review. Eur Respir J 34(4):888-894, "
        "2009 (resting mPAP 14.0 +/- 3.3 mmHg). doi:10.1183/09031936.00145608"
    ),
    "magder2006": (
        "Magder S. Central venous pressure: a useful but not so simple measurement. Crit Care "
        "Med 34(8):2224-2227, 2006 (normal CVP in a spontaneously breathing supine subject "
        "a few mmHg above atmospheric; 2-6 mmHg taken here, midpoint 4 mmHg)"
    ),
    "nadler1962": (
        "Nadler SB, Hidalgo JU, Bloch T. Prediction of blood volume in normal human adults. "
        "Surgery 51(2):224-232, 1962"
    ),
    "reynolds2006": (
        "Reynolds A, Rubin J, Clermont G, Day J, Vodovotz Y, Ermentrout GB. A reduced "
        "mathematical model of the acute inflammatory response: I. Derivation of model and "
        "analysis of anti-inflammation. J Theor Biol 242(1):220-236, 2006"
    ),
    "parker1984": (
        "Parker MM, Shelhamer JH, Bacharach SL, et al. Profound but reversible myocardial "
        "depression in patients with septic shock. Ann Intern Med 100(4):483-490, 1984"
    ),
    "hahn2010": (
        "Hahn RG. Volume kinetics for infusion fluids. Anesthesiology 113(2):470-481, 2010"
    ),
    "beloeil2005": (
        "Beloeil H, Mazoit JX, Benhamou D, Duranteau J. Norepinephrine kinetics and dynamics in "
        "septic shock and trauma patients. Br J Anaesth 95(6):782-788, 2005"
    ),
    "oualha2014": (
        "Oualha M, Urien S, Spreux-Varoquaux O, et al. Pharmacokinetics, hemodynamic and "
        "metabolic effects of epinephrine/norepinephrine in critically ill children. Br J Clin "
        "Pharmacol 78(4):886-897, 2014 (MAP Emax 12-32 mmHg)"
    ),
    "holford1981": (
        "Holford NHG, Sheiner LB. Understanding the dose-effect relationship: clinical "
        "application of pharmacokinetic-pharmacodynamic models. Clin Pharmacokinet 6(6):429-453, "
        "1981"
    ),
    "roberts2009": (
        "Roberts JA, Kirkpatrick CMJ, Roberts MS, Robertson TA, Dalley AJ, Lipman J. Meropenem "
        "dosing in critically ill patients with sepsis and without renal dysfunction. J "
        "Antimicrob Chemother 64(1):142-150, 2009"
    ),
    "regoes2004": (
        "Regoes RR, Wiuff C, Zappala RM, Garner KN, Baquero F, Levin BR. Pharmacodynamic "
        "functions: a multiparameter approach to the design of antibiotic treatment regimens. "
        "Antimicrob Agents Chemother 48(10):3670-3676, 2004"
    ),
    "bellomo2012": (
        "Bellomo R, Kellum JA, Ronco C. Acute kidney injury. Lancet 380(9843):756-766, 2012"
    ),
    "severinghaus1979": (
        "Severinghaus JW. Simple, accurate equations for human blood O2 dissociation "
        "computations. J Appl Physiol 46(3):599-602, 1979"
    ),
    "ellis1989": ("Ellis RK. Determination of PO2 from saturation. J Appl Physiol 67(2):902, 1989"),
    "west2012": (
        "West JB. Respiratory Physiology: The Essentials, 9th ed. Lippincott Williams & "
        "Wilkins, 2012 (alveolar gas and ventilation equations, normal values)"
    ),
    "manthous1995": (
        "Manthous CA, Hall JB, Olson D, et al. Effect of cooling on oxygen consumption in "
        "febrile critically ill patients. Am J Respir Crit Care Med 151(1):10-14, 1995"
    ),
    "ronco1993": (
        "Ronco JJ, Fenwick JC, Tweeddale MG, et al. Identification of the critical oxygen "
        "delivery for anaerobic metabolism in critically ill septic and nonseptic humans. JAMA "
        "270(14):1724-1730, 1993"
    ),
    "levraut1998": (
        "Levraut J, Ciebiera JP, Chave S, et al. Mild hyperlactatemia in stable septic "
        "patients is due to impaired lactate clearance rather than overproduction. Am J Respir "
        "Crit Care Med 157(4):1021-1026, 1998"
    ),
    "karjalainen1986": (
        "Karjalainen J, Viitasalo M. Fever and cardiac rhythm. Arch Intern Med 146(6):"
        "1169-1171, 1986 (heart rate +8.5 /min per degree C)"
    ),
    "bone1992": (
        "Bone RC, Balk RA, Cerra FB, et al. Definitions for sepsis and organ failure and "
        "guidelines for the use of innovative therapies in sepsis (ACCP/SCCM consensus). Chest "
        "101(6):1644-1655, 1992 (SIRS criteria)"
    ),
    "singer2016": (
        "Singer M, Deutschman CS, Seymour CW, et al. The Third International Consensus "
        "Definitions for Sepsis and Septic Shock (Sepsis-3). JAMA 315(8):801-810, 2016"
    ),
    "rivers2001": (
        "Rivers E, Nguyen B, Havstad S, et al. Early goal-directed therapy in the treatment of "
        "severe sepsis and septic shock. N Engl J Med 345(19):1368-1377, 2001"
    ),
    "evans2021": (
        "Evans L, Rhodes A, Alhazzani W, et al. Surviving Sepsis Campaign: international "
        "guidelines for management of sepsis and septic shock 2021. Crit Care Med "
        "49(11):e1063-e1143, 2021"
    ),
    "kumar2006": (
        "Kumar A, Roberts D, Wood KE, et al. Duration of hypotension before initiation of "
        "effective antimicrobial therapy is the critical determinant of survival in human "
        "septic shock. Crit Care Med 34(6):1589-1596, 2006"
    ),
    "sorbini1968": (
        "Sorbini CA, Grassi V, Solinas E, Muiesan G. Arterial oxygen tension in relation to "
        "age in healthy subjects. Respiration 25(1):3-13, 1968"
    ),
    "reyna2020": (
        "Reyna MA, Josef CS, Jeter R, et al. Early prediction of sepsis from clinical data: "
        "the PhysioNet/Computing in Cardiology Challenge 2019. Crit Care Med 48(2):210-217, 2020"
    ),
    "fryar2021": (
        "Fryar CD, Carroll MD, Gu Q, Afful J, Ogden CL. Anthropometric reference data for "
        "children and adults: United States, 2015-2018. Vital Health Stat 3(46), 2021"
    ),
    "gardner1981": (
        "Gardner RM. Direct blood pressure measurement - dynamic response requirements. "
        "Anesthesiology 54(3):227-236, 1981"
    ),
    "mcghee2002": (
        "McGhee BH, Bridges EJ. Monitoring arterial blood pressure: what you may not know. "
        "Crit Care Nurse 22(2):60-79, 2002"
    ),
    "vovk2005": (
        "Vovk V, Gammerman A, Shafer G. Algorithmic Learning in a Random World. Springer, 2005 "
        "(conformal prediction)"
    ),
    "gibbs2021": (
        "Gibbs I, Candes E. Adaptive conformal inference under distribution shift. Advances "
        "in Neural Information Processing Systems 34:1660-1672, 2021"
    ),
    "gneiting2007": (
        "Gneiting T, Raftery AE. Strictly proper scoring rules, prediction, and estimation. "
        "J Am Stat Assoc 102(477):359-378, 2007 (CRPS of a normal forecast in closed form)"
    ),
    "tanaka2001": (
        "Tanaka H, Monahan KD, Seals DR. Age-predicted maximal heart rate revisited. J Am Coll "
        "Cardiol 37(1):153-156, 2001 (HRmax = 208 - 0.7 x age)"
    ),
    "owen1998": (
        "Owen AB. Scrambling Sobol' and Niederreiter-Xing points. J Complexity 14(4):466-489, 1998"
    ),
    "mosteller1987": (
        "Mosteller RD. Simplified calculation of body-surface area. N Engl J Med 317(17):1098, 1987"
    ),
    "rvasc2010": (
        "Reference Values for Arterial Stiffness' Collaboration. Determinants of pulse wave "
        "velocity in healthy people and in the presence of cardiovascular risk factors: "
        "'establishing normal and reference values'. Eur Heart J 31(19):2338-2350, 2010 "
        "(normal-values population, mean carotid-femoral PWV by age decade)"
    ),
    "bramwellhill1922": (
        "Bramwell JC, Hill AV. The velocity of the pulse wave in man. Proc R Soc Lond B "
        "93(652):298-306, 1922 (distensibility proportional to 1/PWV^2)"
    ),
    "atls2018": (
        "American College of Surgeons Committee on Trauma. ATLS Advanced Trauma Life Support, "
        "10th ed., 2018, ch. 3, table 3-1: class II haemorrhage (15-30 % blood volume loss): "
        "heart rate normal to increased, systolic pressure normal, pulse pressure decreased"
    ),
    "monnet2016": (
        "Monnet X, Marik PE, Teboul JL. Prediction of fluid responsiveness: an update. Ann "
        "Intensive Care 6:111, 2016 (a 500 mL fluid challenge; responders raise cardiac output "
        "by >= 10-15 %; about half of patients respond)"
    ),
    "evensen2009": (
        "Evensen G. Data Assimilation: The Ensemble Kalman Filter, 2nd ed. Springer, 2009 "
        "(ch. 7 and 9: joint state and parameter estimation by state augmentation). "
        "doi:10.1007/978-3-642-03711-5"
    ),
    "dee1998": (
        "Dee DP, da Silva AM. Data assimilation in the presence of forecast bias. Q J R Meteorol "
        "Soc 124(545):269-295, 1998 (bias estimated with the state; the forecast bias persists "
        "between analyses)"
    ),
    "kennedy2001": (
        "Kennedy MC, O'Hagan A. Bayesian calibration of computer models. J R Stat Soc B "
        "63(3):425-464, 2001 (observation = model + discrepancy + noise, eq. 5)"
    ),
    "whitaker2002": (
        "Whitaker JS, Hamill TM. Ensemble data assimilation without perturbed observations. Mon "
        "Weather Rev 130(7):1913-1924, 2002 (serial ensemble square-root filter, eq. 13: "
        "alpha = 1 / (1 + sqrt(R / (HPH' + R))))"
    ),
    "whitaker2012": (
        "Whitaker JS, Hamill TM. Evaluating methods to account for system errors in ensemble "
        "data assimilation. Mon Weather Rev 140(9):3078-3089, 2012 (relaxation to prior spread, "
        "eq. 3; alpha 0.5-0.9)"
    ),
    "desroziers2005": (
        "Desroziers G, Berre L, Chapnik B, Poli P. Diagnosis of observation, background and "
        "analysis-error statistics in observation space. Q J R Meteorol Soc 131(613):3385-3396, "
        "2005 (E[d d'] = HBH' + R for innovations d)"
    ),
    "anderson2009": (
        "Anderson JL. Spatially and temporally varying adaptive covariance inflation for "
        "ensemble filters. Tellus A 61(1):72-83, 2009"
    ),
    "anderson2001": (
        "Anderson JL. An ensemble adjustment Kalman filter for data assimilation. Mon Weather "
        "Rev 129(12):2884-2903, 2001 (observation-space ensemble updated with the state)"
    ),
    "iso81060_2": (
        "ISO 81060-2:2018 Non-invasive sphygmomanometers - Part 2: Clinical investigation of "
        "intermittent automated measurement type (mean error <= 5 mmHg, SD <= 8 mmHg)"
    ),
    "iec60601_2_27": (
        "IEC 60601-2-27:2011 Particular requirements for electrocardiographic monitoring "
        "equipment (heart rate accuracy: +/-10 % or +/-5 /min, whichever is greater)"
    ),
    "iec60601_2_34": (
        "IEC 60601-2-34:2011 Particular requirements for invasive blood pressure monitoring "
        "equipment (pressure accuracy +/-4 mmHg or +/-4 % of the reading, whichever is greater)"
    ),
    "mindray_n22": (
        "Mindray BeneVision N22/N19 Patient Monitor Operator's Manual, A.14.4 PR specifications "
        "(pulse rate from the SpO2 module +/-3 /min; Masimo module +/-3 /min without motion, "
        "+/-5 /min with motion)"
    ),
    "iso80601_2_61": (
        "ISO 80601-2-61:2017 Particular requirements for pulse oximeter equipment (SpO2 "
        "accuracy A_rms <= 4 % over 70-100 %; typical devices 2-3 %)"
    ),
    "brun2001": (
        "Brun R, Reichert P, Kuensch HR. Practical identifiability analysis of large "
        "environmental simulation models. Water Resour Res 37(4):1015-1030, 2001 (sensitivity "
        "measure delta_msqr; collinearity index gamma = 1/sqrt(min eigenvalue of the normalised "
        "sensitivity matrix's S'S); gamma below 10-15 identifiable)"
    ),
    "mackay1992": (
        "MacKay DJC. A practical Bayesian framework for backpropagation networks. Neural "
        "Comput 4(3):448-472, 1992 (Laplace approximation: Gaussian at the MAP with covariance "
        "the inverse Hessian of the negative log posterior)"
    ),
    "maheshwari2018": (
        "Maheshwari K, Nathanson BH, Munson SH, et al. The relationship between ICU hypotension "
        "and in-hospital mortality and morbidity in septic patients. Intensive Care Med "
        "44(6):857-867, 2018 (MAP below 65 mmHg: harm rises with its duration)"
    ),
    "mcdonagh2021": (
        "McDonagh TA et al. 2021 ESC Guidelines for the diagnosis and treatment of acute and "
        "chronic heart failure. Eur Heart J 42(36):3599-3726, 2021 (HFrEF: LVEF <= 40 %)"
    ),
}


def cite(key: str) -> str:
    """The full reference for a bibliography key."""
    return SOURCES[key]
